//! The crate's error, with the stable code each variant answers.

use ward_model::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A review or export request that cannot be answered as asked (bad window, unknown
    /// bed, a time that does not parse).
    #[error("{0}")]
    BadRequest(String),
    /// Rendering or writing an exported strip or report failed.
    #[error("export: {0}")]
    Render(String),
    #[error(transparent)]
    Store(#[from] ward_store::StoreError),
}

impl ExportError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ExportError::BadRequest(_) => ErrorCode::BadRequest,
            ExportError::Render(_) => ErrorCode::Export,
            ExportError::Store(_) => ErrorCode::Store,
        }
    }
}
