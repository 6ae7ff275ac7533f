//! ward-sync: the station and the hospital core. Store-and-forward of the audit trail
//! (alarm events, acknowledgements, device and station events) over MQTT 5 or 3.1.1 to any broker (one, or the nodes of a cluster),
//! acknowledgements from peer stations of the unit, and the upstream password from the OS
//! credential store.
//!
//! What it is: two tokio tasks (the outbox worker and the peer listener) that stop on a
//! cancellation token, and the credential-store glue. What it is not: it decides no alarm.
//! A peer's acknowledgement is handed to the station as a [`PeerAck`] (an
//! `AlarmCommand::PeerAcknowledge` with "who at which station"), and the watermark is
//! written through the [`ward_store::RecordSink`] the station gives it.
//!
//! Layout: `client` (credentials, TLS), `link` (one connection in either MQTT version, failing
//! over round the core's endpoints), `outbox` (the worker, the peer listener, status), `liveness` (this station's
//! retained liveness message with its will, and the pure watch over the peers'), `secrets` (keyring-core stores:
//! Secret Service, keyutils, Windows).

mod client;
mod error;
mod link;
pub mod liveness;
pub mod outbox;
pub mod secrets;

pub use liveness::{Liveness, PeerChange};
pub use outbox::{
    remote_ack, FollowedAck, PeerAck, PeerListener, SharedStatus, SyncStatus, Worker,
    FOLLOWED_ACK_KIND,
};

pub use error::{SecretError, SyncError};
