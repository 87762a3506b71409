//! Everything the scheduler can answer besides success, mapped to the client-facing error in
//! this one place.

use pillivery_platform::error::{ApiError, FieldViolation, Text};
use tonic::Code;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// A verified caller without the role the call needs.
    #[error("the caller may not do this")]
    Forbidden,
    #[error("no billing job for subscription {0}")]
    JobNotFound(i64),
    /// SUSPENDED or CANCELED: never billed again, so it cannot be rescheduled.
    #[error("the billing job of subscription {0} has ended")]
    JobEnded(i64),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl From<Vec<FieldViolation>> for SchedulerError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        SchedulerError::Invalid(violations)
    }
}

impl SchedulerError {
    pub fn into_api_error(self) -> ApiError {
        match self {
            SchedulerError::Invalid(violations) => ApiError::validation(violations),
            SchedulerError::Forbidden => ApiError::new(
                Code::PermissionDenied,
                "FORBIDDEN",
                Text::new("권한이 없습니다.", "You are not allowed to do this."),
            ),
            SchedulerError::JobNotFound(_) => ApiError::new(
                Code::NotFound,
                "BILLING_JOB_NOT_FOUND",
                Text::new("존재하지 않는 결제 작업입니다.", "No such billing job."),
            ),
            SchedulerError::JobEnded(_) => ApiError::new(
                Code::FailedPrecondition,
                "BILLING_JOB_ENDED",
                Text::new(
                    "종료된 정기결제 작업은 변경할 수 없습니다.",
                    "A billing job that has ended cannot be changed.",
                ),
            ),
            SchedulerError::Storage(error) if error.is_unavailable() => {
                ApiError::unavailable(&error)
            }
            SchedulerError::Storage(error) => ApiError::internal(&error),
        }
    }
}
