//! The crate's error, with the stable code each variant answers.

use ward_model::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no upstream password in the {store} credential store (service \"wardwatch-upstream\", account {account:?}); set it with `wardwatch credentials set-upstream`")]
    Missing { store: String, account: String },
    #[error("the {store} credential store is not available here: {reason}")]
    Unavailable { store: String, reason: String },
    #[error("{0} is not set (upstream.password_from = \"env\")")]
    EnvMissing(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A file or setting the upstream section names cannot be used.
    #[error("config station config: key `{key}`: {reason}")]
    File { key: String, reason: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the upstream password is empty")]
    EmptyPassword,
}

impl SyncError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SyncError::File { .. } => ErrorCode::Config,
            SyncError::Secret(_) => ErrorCode::CredentialStore,
            SyncError::EmptyPassword => ErrorCode::EmptyPassword,
        }
    }
}
