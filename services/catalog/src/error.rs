//! Everything the catalog can answer besides success, mapped to the client-facing error in this
//! one place.

use pillivery_platform::error::{ApiError, FieldViolation, Text};
use tonic::Code;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// A verified caller without the role the call needs.
    #[error("the caller may not do this")]
    Forbidden,
    #[error("item {0} does not exist")]
    ItemNotFound(i64),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl From<Vec<FieldViolation>> for CatalogError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        CatalogError::Invalid(violations)
    }
}

impl CatalogError {
    pub fn into_api_error(self) -> ApiError {
        match self {
            CatalogError::Invalid(violations) => ApiError::validation(violations),
            CatalogError::Forbidden => ApiError::new(
                Code::PermissionDenied,
                "FORBIDDEN",
                Text::new("권한이 없습니다.", "You are not allowed to do this."),
            ),
            CatalogError::ItemNotFound(_) => ApiError::new(
                Code::NotFound,
                "ITEM_NOT_FOUND",
                Text::new("존재하지 않는 아이템입니다.", "No such item."),
            ),
            CatalogError::Storage(StoreError::Invalid(violations)) => {
                ApiError::validation(violations)
            }
            CatalogError::Storage(error) if error.is_unavailable() => ApiError::unavailable(&error),
            CatalogError::Storage(error) => ApiError::internal(&error),
        }
    }
}
