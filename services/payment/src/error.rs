//! Everything the payment service can answer besides success, mapped to the client-facing
//! error in this one place. Internal causes (PG bodies, database errors) are logged here or
//! where they happen, never sent.

use pillivery_platform::error::{ApiError, FieldViolation, Text};
use tonic::Code;

use crate::clients::OrderCallError;
use crate::provider::ProviderError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// Unknown, or someone else's (404 either way, so existence is not revealed).
    #[error("order {0} not found")]
    OrderNotFound(i64),
    #[error("no payment for order {0}")]
    PaymentNotFound(i64),
    #[error("order {0} cannot be paid in its state")]
    InvalidOrderState(i64),
    #[error("the payment of order {0} is not in a state that allows this")]
    InvalidPaymentState(i64),
    #[error("idempotency key already used for order {used_for}")]
    IdempotencyKeyReused { used_for: i64 },
    #[error("the PG approved {approved} for order {order_id}, expected {expected}")]
    AmountMismatch {
        order_id: i64,
        expected: i64,
        approved: i64,
    },
    #[error("the PG refused the approval: {code}")]
    ApprovalRefused { code: String },
    #[error("another request is completing this payment")]
    PaymentInProgress,
    #[error("another request is sending this charge")]
    ChargeInProgress,
    #[error("the subscription {0} is not active")]
    SubscriptionInactive(i64),
    #[error("no active PG subscription key for order {0}")]
    SubscriptionKeyMissing(i64),
    #[error("charge {subscription_id}/{cycle} was first asked with other values")]
    ChargeMismatch { subscription_id: i64, cycle: i32 },
    #[error("the PG refused the refund: {code}")]
    RefundRefused { code: String },
    #[error("the PG: {0}")]
    Pg(ProviderError),
    #[error("the order service: {0}")]
    Order(#[from] OrderCallError),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl From<Vec<FieldViolation>> for PaymentError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        PaymentError::Invalid(violations)
    }
}

fn upstream_unavailable() -> ApiError {
    ApiError::new(
        Code::Unavailable,
        "UPSTREAM_UNAVAILABLE",
        Text::new(
            "결제 시스템을 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도해 주세요.",
            "The payment system is temporarily unavailable. Please try again shortly.",
        ),
    )
}

impl PaymentError {
    pub fn into_api_error(self) -> ApiError {
        match self {
            PaymentError::Invalid(violations) => ApiError::validation(violations),
            PaymentError::OrderNotFound(_) | PaymentError::Order(OrderCallError::NotFound(_)) => {
                ApiError::new(
                    Code::NotFound,
                    "ORDER_NOT_FOUND",
                    Text::new("존재하지 않는 주문입니다.", "No such order."),
                )
            }
            PaymentError::PaymentNotFound(_) => ApiError::new(
                Code::NotFound,
                "PAYMENT_NOT_FOUND",
                Text::new("결제 내역이 없습니다.", "No payment for this order."),
            ),
            PaymentError::InvalidOrderState(_) => ApiError::new(
                Code::FailedPrecondition,
                "INVALID_ORDER_STATE",
                Text::new(
                    "결제할 수 없는 주문 상태입니다.",
                    "The order cannot be paid in its current state.",
                ),
            ),
            PaymentError::InvalidPaymentState(_) => ApiError::new(
                Code::FailedPrecondition,
                "INVALID_PAYMENT_STATE",
                Text::new(
                    "결제 상태가 이 요청을 허용하지 않습니다.",
                    "The payment is not in a state that allows this.",
                ),
            ),
            PaymentError::IdempotencyKeyReused { .. } => ApiError::new(
                Code::AlreadyExists,
                "IDEMPOTENCY_KEY_REUSED",
                Text::new(
                    "이미 다른 요청에 사용된 Idempotency-Key입니다.",
                    "This Idempotency-Key was already used for another request.",
                ),
            ),
            PaymentError::AmountMismatch { .. } => ApiError::new(
                Code::FailedPrecondition,
                "AMOUNT_MISMATCH",
                Text::new(
                    "승인 금액이 주문 금액과 달라 결제를 취소했습니다.",
                    "The approved amount differs from the order total; the payment was cancelled.",
                ),
            ),
            PaymentError::ApprovalRefused { .. } => ApiError::new(
                Code::FailedPrecondition,
                "PAYMENT_DECLINED",
                Text::new(
                    "결제 승인이 거절되었습니다.",
                    "The payment was not approved.",
                ),
            ),
            PaymentError::PaymentInProgress => ApiError::new(
                Code::Aborted,
                "PAYMENT_IN_PROGRESS",
                Text::new(
                    "결제를 처리하고 있습니다. 잠시 후 다시 확인해 주세요.",
                    "The payment is being processed. Please check again shortly.",
                ),
            ),
            PaymentError::ChargeInProgress => ApiError::new(
                Code::Unavailable,
                "CHARGE_IN_PROGRESS",
                Text::new(
                    "같은 결제를 처리하고 있습니다. 잠시 후 다시 시도해 주세요.",
                    "This charge is being processed. Please try again shortly.",
                ),
            ),
            PaymentError::SubscriptionInactive(_) => ApiError::new(
                Code::FailedPrecondition,
                "SUBSCRIPTION_INACTIVE",
                Text::new(
                    "해지된 정기결제입니다.",
                    "The subscription is no longer active.",
                ),
            ),
            PaymentError::SubscriptionKeyMissing(_) => ApiError::new(
                Code::FailedPrecondition,
                "SUBSCRIPTION_KEY_INACTIVE",
                Text::new(
                    "정기결제 키가 없거나 비활성화되었습니다.",
                    "The subscription's payment key is missing or inactive.",
                ),
            ),
            PaymentError::ChargeMismatch { .. } => ApiError::new(
                Code::FailedPrecondition,
                "CHARGE_MISMATCH",
                Text::new(
                    "같은 회차의 결제가 다른 금액으로 요청되었습니다.",
                    "This cycle was first charged with other values.",
                ),
            ),
            PaymentError::RefundRefused { .. } => ApiError::new(
                Code::FailedPrecondition,
                "REFUND_DECLINED",
                Text::new("환불이 거절되었습니다.", "The refund was refused."),
            ),
            PaymentError::Pg(error) => {
                tracing::warn!(%error, "PG call failed");
                upstream_unavailable()
            }
            PaymentError::Order(OrderCallError::Unavailable(cause)) => {
                tracing::warn!(%cause, "order service unavailable");
                upstream_unavailable()
            }
            PaymentError::Order(error @ OrderCallError::Refused { .. }) => {
                ApiError::internal(&error)
            }
            PaymentError::Storage(error) if error.is_unavailable() => ApiError::unavailable(&error),
            PaymentError::Storage(error) => ApiError::internal(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_code_and_reason() {
        let cases: Vec<(PaymentError, Code, &str)> = vec![
            (
                PaymentError::OrderNotFound(1),
                Code::NotFound,
                "ORDER_NOT_FOUND",
            ),
            (
                PaymentError::Order(OrderCallError::NotFound(1)),
                Code::NotFound,
                "ORDER_NOT_FOUND",
            ),
            (
                PaymentError::PaymentNotFound(1),
                Code::NotFound,
                "PAYMENT_NOT_FOUND",
            ),
            (
                PaymentError::InvalidOrderState(1),
                Code::FailedPrecondition,
                "INVALID_ORDER_STATE",
            ),
            (
                PaymentError::InvalidPaymentState(1),
                Code::FailedPrecondition,
                "INVALID_PAYMENT_STATE",
            ),
            (
                PaymentError::IdempotencyKeyReused { used_for: 2 },
                Code::AlreadyExists,
                "IDEMPOTENCY_KEY_REUSED",
            ),
            (
                PaymentError::AmountMismatch {
                    order_id: 1,
                    expected: 2,
                    approved: 3,
                },
                Code::FailedPrecondition,
                "AMOUNT_MISMATCH",
            ),
            (
                PaymentError::ApprovalRefused {
                    code: "-703".into(),
                },
                Code::FailedPrecondition,
                "PAYMENT_DECLINED",
            ),
            (
                PaymentError::PaymentInProgress,
                Code::Aborted,
                "PAYMENT_IN_PROGRESS",
            ),
            (
                PaymentError::ChargeInProgress,
                Code::Unavailable,
                "CHARGE_IN_PROGRESS",
            ),
            (
                PaymentError::SubscriptionInactive(1),
                Code::FailedPrecondition,
                "SUBSCRIPTION_INACTIVE",
            ),
            (
                PaymentError::SubscriptionKeyMissing(1),
                Code::FailedPrecondition,
                "SUBSCRIPTION_KEY_INACTIVE",
            ),
            (
                PaymentError::ChargeMismatch {
                    subscription_id: 1,
                    cycle: 1,
                },
                Code::FailedPrecondition,
                "CHARGE_MISMATCH",
            ),
            (
                PaymentError::RefundRefused { code: "-8".into() },
                Code::FailedPrecondition,
                "REFUND_DECLINED",
            ),
            (
                PaymentError::Pg(ProviderError::NotSent("open".into())),
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
            ),
            (
                PaymentError::Pg(ProviderError::Unknown("timeout".into())),
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
            ),
            (
                PaymentError::Order(OrderCallError::Unavailable("down".into())),
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
            ),
            (
                PaymentError::Order(OrderCallError::Refused {
                    code: Code::InvalidArgument,
                    message: "no".into(),
                }),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (error, code, reason) in cases {
            let name = error.to_string();
            let api = error.into_api_error();
            assert_eq!((api.code, api.reason.as_ref()), (code, reason), "{name}");
        }
    }
}
