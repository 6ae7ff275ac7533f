//! The crate's error, with the stable code each variant answers.

use crate::policy::Denial;
use ward_model::{ErrorCode, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A person may not do this (or is not signed in, or the session is locked). Audited.
    #[error("{reason}")]
    Denied { code: ErrorCode, reason: String },
    /// What was asked cannot be done as asked (a weak password, an unknown nurse or bed).
    #[error("{reason}")]
    Invalid { code: ErrorCode, reason: String },
    #[error(transparent)]
    Store(#[from] ward_store::StoreError),
    /// The directory itself is unusable (a poisoned lock, no randomness for a token).
    #[error("{0}")]
    Internal(String),
}

impl AccessError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AccessError::Denied { code, .. } | AccessError::Invalid { code, .. } => *code,
            AccessError::Store(_) => ErrorCode::Store,
            AccessError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<Denial> for AccessError {
    fn from(d: Denial) -> Self {
        match d.code.kind() {
            ErrorKind::Denied => AccessError::Denied {
                code: d.code,
                reason: d.reason,
            },
            ErrorKind::Invalid => AccessError::Invalid {
                code: d.code,
                reason: d.reason,
            },
            ErrorKind::Fault => AccessError::Internal(d.reason),
        }
    }
}
