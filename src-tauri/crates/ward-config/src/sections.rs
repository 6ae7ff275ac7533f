//! The validated types of the sections other crates consume (access, upstream). They live
//! here, not in the crates that use them, so that config stays a leaf.

use std::path::PathBuf;

/// Hospital policy for who may act, from the `[access]` config section.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessPolicy {
    /// Nurses may act on every bed of the unit, not only the beds assigned to them.
    pub nurses_all_beds: bool,
    /// A session with no activity for this long locks (0: never).
    pub auto_lock_ms: i64,
    /// Create the documented demo accounts at start (demo and test configs only).
    pub demo_accounts: bool,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            nurses_all_beds: false,
            auto_lock_ms: 5 * 60_000,
            demo_accounts: false,
        }
    }
}

/// Where the upstream password comes from: never the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// No password (certificate-only or anonymous cores).
    None,
    /// `WARDWATCH_UPSTREAM_PASSWORD` ([`crate::UPSTREAM_PASSWORD_ENV`]).
    Env,
    /// The OS credential store named here, under the service `wardwatch-upstream` and
    /// `account`.
    Keyring { store: String, account: String },
}

/// The credential stores `[upstream] keyring_store` may name (`ward_sync::secrets` opens
/// them).
pub const KEYRING_STORES: [&str; 3] = ["secret-service", "keyutils", "windows"];

/// The store the station uses unless configured otherwise.
pub fn default_keyring_store() -> &'static str {
    if cfg!(windows) {
        "windows"
    } else {
        "secret-service"
    }
}

/// The MQTT version the station speaks to the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V5,
    /// For cores whose MQTT speaks no 5 (RabbitMQ 3.x): no user properties, no session expiry
    /// (a persistent session lasts until the core drops it).
    V311,
}

/// The `[upstream]` section: the hospital core the station syncs to.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Name of this upstream in `sync_state` (and in metrics).
    pub name: String,
    /// The core's nodes, `(host, port)`, tried in turn: one broker, or the nodes of a cluster.
    /// Never empty.
    pub endpoints: Vec<(String, u16)>,
    pub mqtt_version: MqttVersion,
    /// PEM CA certificate file; TLS is on when set.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub username: Option<String>,
    /// The OS keyring or the environment, never the config file; read at each connection.
    pub password: PasswordSource,
    pub topic_prefix: String,
    pub client_id: String,
    /// Other stations of the same unit: their acknowledgements, received through the core,
    /// apply here, and their liveness is watched.
    pub peers: Vec<String>,
    /// A peer whose liveness heartbeats stop for this long is "not monitoring".
    pub peer_timeout: std::time::Duration,
    /// This station's name, in its liveness message.
    pub station_name: String,
}
