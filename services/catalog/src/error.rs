//! Everything the catalog can answer besides success, mapped to the client-facing error in this
//! one place.

use std::sync::Arc;

use pillivery_platform::auth::unauthenticated;
use pillivery_platform::client::CallError;
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
    /// No live review with this id, or (for edits and deletes) one of another author: someone
    /// else's review answers like a missing one (SPEC section 3, ownership).
    #[error("review {0} does not exist")]
    ReviewNotFound(i64),
    /// The caller has no PAID order with this id holding this item.
    #[error("the caller did not buy this item in this order")]
    NotPurchased,
    /// A live review of this (order, item) exists.
    #[error("this purchase is already reviewed")]
    AlreadyReviewed,
    /// The token is valid but the user service knows no active account behind it.
    #[error("the caller's account is not active")]
    InactiveAccount,
    /// An edge of the catalog (order, user) did not answer usably.
    #[error("upstream `{upstream}`: {error}")]
    Upstream {
        upstream: &'static str,
        error: CallError,
    },
    /// An edge the call needs has no target configured.
    #[error("upstream `{0}` is not configured")]
    UpstreamMissing(&'static str),
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// A database failure shared by every caller that waited for one cached load.
    #[error(transparent)]
    SharedStorage(Arc<StoreError>),
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
            CatalogError::ReviewNotFound(_) => ApiError::new(
                Code::NotFound,
                "REVIEW_NOT_FOUND",
                Text::new("존재하지 않는 리뷰입니다.", "No such review."),
            ),
            CatalogError::NotPurchased => ApiError::new(
                Code::FailedPrecondition,
                "NOT_PURCHASED",
                Text::new(
                    "결제가 완료된 주문에서 구매한 상품만 리뷰할 수 있습니다.",
                    "Only items bought in one of your paid orders can be reviewed.",
                ),
            ),
            CatalogError::AlreadyReviewed => ApiError::new(
                Code::AlreadyExists,
                "ALREADY_REVIEWED",
                Text::new(
                    "이 주문의 상품에 대한 리뷰를 이미 작성했습니다.",
                    "You have already reviewed this item for this order.",
                ),
            ),
            CatalogError::InactiveAccount => unauthenticated("INVALID_TOKEN"),
            CatalogError::Upstream { upstream, error } => {
                tracing::warn!(upstream, %error, "upstream call failed");
                match error.into_api_error() {
                    // Open breaker, full bulkhead (503) or deadline (504).
                    Ok(api_error) => api_error,
                    // The service's own failure (UNAVAILABLE, INTERNAL, a status it should
                    // never give for a read): nothing can be decided, so nothing is written.
                    Err(_status) => upstream_unavailable(),
                }
            }
            CatalogError::UpstreamMissing(upstream) => {
                tracing::warn!(upstream, "upstream not configured");
                upstream_unavailable()
            }
            CatalogError::Storage(StoreError::Invalid(violations)) => {
                ApiError::validation(violations)
            }
            CatalogError::Storage(error) => storage_error(&error),
            CatalogError::SharedStorage(error) => storage_error(&error),
        }
    }
}

fn upstream_unavailable() -> ApiError {
    ApiError::new(
        Code::Unavailable,
        "UPSTREAM_UNAVAILABLE",
        Text::new(
            "서비스를 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도해 주세요.",
            "The service is temporarily unavailable. Please try again shortly.",
        ),
    )
}

fn storage_error(error: &StoreError) -> ApiError {
    match error {
        StoreError::Invalid(violations) => ApiError::validation(violations.clone()),
        error if error.is_unavailable() => ApiError::unavailable(error),
        error => ApiError::internal(error),
    }
}
