//! The station's error: each part's own error, and the few that belong to the composition.
//! Every variant answers a stable [`ErrorCode`] (`code()`), which is what the window and
//! scripts branch on.

use ward_model::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Config(#[from] ward_config::ConfigError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] ward_broker::BrokerError),
    #[error(transparent)]
    Store(#[from] ward_store::StoreError),
    #[cfg(feature = "sim")]
    #[error("simulator: {0}")]
    Sim(#[from] ward_sim::SimError),
    /// A part of the station could not start.
    #[error("station start-up failed: {0}")]
    Start(String),
    /// A part's state is unusable at run time (a poisoned lock).
    #[error("station fault: {0}")]
    Internal(String),
    #[error(transparent)]
    Alarm(#[from] ward_alarm::AlarmError),
    #[error("the alarm system is not answering: {0}")]
    AlarmDriver(&'static str),
    /// Who may act: a denial (audited) or a bad user change.
    #[error(transparent)]
    Access(#[from] ward_access::AccessError),
    /// A request the station cannot do as asked (a bad device id, nothing to discharge, an
    /// unknown bed).
    #[error("{reason}")]
    Invalid { code: ErrorCode, reason: String },
    #[error(transparent)]
    Sync(#[from] ward_sync::SyncError),
    #[error(transparent)]
    Secret(#[from] ward_sync::SecretError),
    #[error(transparent)]
    Export(#[from] ward_export::ExportError),
}

impl CoreError {
    /// Stable code for the window to branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::Config(_) | CoreError::DataDir { .. } => ErrorCode::Config,
            CoreError::Broker(_) => ErrorCode::Broker,
            CoreError::Store(_) => ErrorCode::Store,
            #[cfg(feature = "sim")]
            CoreError::Sim(_) => ErrorCode::Internal,
            CoreError::Start(_) | CoreError::Internal(_) => ErrorCode::Internal,
            CoreError::Alarm(e) => e.code(),
            CoreError::AlarmDriver(_) => ErrorCode::AlarmDriver,
            CoreError::Access(e) => e.code(),
            CoreError::Invalid { code, .. } => *code,
            CoreError::Sync(e) => e.code(),
            CoreError::Secret(_) => ErrorCode::CredentialStore,
            CoreError::Export(e) => e.code(),
        }
    }

    pub(crate) fn invalid(code: ErrorCode, reason: impl Into<String>) -> Self {
        CoreError::Invalid {
            code,
            reason: reason.into(),
        }
    }
}
