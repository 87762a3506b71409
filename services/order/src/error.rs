//! Everything the order service can answer besides success, mapped to the client-facing error
//! (gRPC code + stable reason + Korean/English message) in this one place.

use pillivery_platform::client::CallError;
use pillivery_platform::error::{ApiError, FieldViolation, Text};
use tonic::Code;

use crate::domain::{InvalidSubscriptionState, InvalidTransition};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    #[error("item {0} does not exist")]
    ItemNotFound(i64),
    #[error("item {0} is not in the cart")]
    CartLineNotFound(i64),
    #[error("the cart already holds the most lines")]
    CartFull,
    /// Also what someone else's order answers: its existence is not revealed.
    #[error("order {0} does not exist")]
    OrderNotFound(i64),
    #[error("subscription {0} does not exist")]
    SubscriptionNotFound(i64),
    #[error(transparent)]
    InvalidOrderState(#[from] InvalidTransition),
    #[error(transparent)]
    InvalidSubscriptionState(#[from] InvalidSubscriptionState),
    #[error("the idempotency key was used for another request")]
    IdempotencyKeyReused,
    #[error("the request with this idempotency key is still being processed")]
    IdempotencyKeyInFlight,
    #[error("amount {paid} does not match the order total {expected}")]
    AmountMismatch { expected: i64, paid: i64 },
    #[error("cycle {reported} is not the next cycle after {current}")]
    CycleOutOfOrder { current: i32, reported: i32 },
    #[error("an amount is out of range")]
    AmountOutOfRange,
    #[error("catalog call failed: {0}")]
    Catalog(#[from] CallError),
    /// The catalog answered something this service cannot use (a price that does not add up).
    #[error("catalog answered an unusable item: {0}")]
    CatalogAnswer(String),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl From<Vec<FieldViolation>> for OrderError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        OrderError::Invalid(violations)
    }
}

impl From<FieldViolation> for OrderError {
    fn from(violation: FieldViolation) -> Self {
        OrderError::Invalid(vec![violation])
    }
}

impl From<sea_orm::DbErr> for OrderError {
    fn from(error: sea_orm::DbErr) -> Self {
        OrderError::Storage(StoreError::Database(error))
    }
}

impl From<crate::domain::money::AmountOverflow> for OrderError {
    fn from(_: crate::domain::money::AmountOverflow) -> Self {
        OrderError::AmountOutOfRange
    }
}

impl From<crate::domain::subscription::DateOutOfRange> for OrderError {
    fn from(_: crate::domain::subscription::DateOutOfRange) -> Self {
        OrderError::Invalid(vec![FieldViolation::new(
            "periodDays",
            serde_json::Value::Null,
            Text::new("날짜 범위를 벗어났습니다.", "the date is out of range"),
        )])
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

impl OrderError {
    pub fn into_api_error(self) -> ApiError {
        match self {
            OrderError::Invalid(violations) => ApiError::validation(violations),
            OrderError::ItemNotFound(_) => ApiError::new(
                Code::NotFound,
                "ITEM_NOT_FOUND",
                Text::new("존재하지 않는 아이템입니다.", "No such item."),
            ),
            OrderError::CartLineNotFound(_) => ApiError::new(
                Code::NotFound,
                "CART_LINE_NOT_FOUND",
                Text::new(
                    "장바구니에 없는 상품입니다.",
                    "The item is not in the cart.",
                ),
            ),
            OrderError::CartFull => ApiError::new(
                Code::FailedPrecondition,
                "CART_FULL",
                Text::new(
                    "장바구니에는 최대 50개 상품을 담을 수 있습니다.",
                    "A cart holds at most 50 items.",
                ),
            ),
            OrderError::OrderNotFound(_) => ApiError::new(
                Code::NotFound,
                "ORDER_NOT_FOUND",
                Text::new("존재하지 않는 주문입니다.", "No such order."),
            ),
            OrderError::SubscriptionNotFound(_) => ApiError::new(
                Code::NotFound,
                "SUBSCRIPTION_NOT_FOUND",
                Text::new("존재하지 않는 정기구독입니다.", "No such subscription."),
            ),
            OrderError::InvalidOrderState(_) => ApiError::new(
                Code::FailedPrecondition,
                "INVALID_ORDER_STATE",
                Text::new(
                    "현재 주문 상태에서는 처리할 수 없습니다.",
                    "The order cannot do this in its current status.",
                ),
            ),
            OrderError::InvalidSubscriptionState(_) => ApiError::new(
                Code::FailedPrecondition,
                "INVALID_SUBSCRIPTION_STATE",
                crate::domain::subscription::invalid_state_text(),
            ),
            OrderError::IdempotencyKeyReused => ApiError::new(
                Code::AlreadyExists,
                "IDEMPOTENCY_KEY_REUSED",
                Text::new(
                    "이미 다른 요청에 사용된 Idempotency-Key 입니다.",
                    "This Idempotency-Key was already used for a different request.",
                ),
            ),
            OrderError::IdempotencyKeyInFlight => ApiError::new(
                Code::Aborted,
                "IDEMPOTENCY_KEY_IN_FLIGHT",
                Text::new(
                    "같은 Idempotency-Key 요청을 처리 중입니다. 잠시 후 다시 시도해 주세요.",
                    "A request with this Idempotency-Key is still being processed; retry shortly.",
                ),
            ),
            OrderError::AmountMismatch { .. } => ApiError::new(
                Code::FailedPrecondition,
                "AMOUNT_MISMATCH",
                Text::new(
                    "결제 금액이 주문 금액과 다릅니다.",
                    "The paid amount differs from the order total.",
                ),
            ),
            OrderError::CycleOutOfOrder { .. } => ApiError::new(
                Code::FailedPrecondition,
                "RENEWAL_CYCLE_MISMATCH",
                Text::new(
                    "정기결제 회차가 올바르지 않습니다.",
                    "The renewal cycle is not the next one.",
                ),
            ),
            OrderError::AmountOutOfRange => ApiError::new(
                Code::FailedPrecondition,
                "AMOUNT_OUT_OF_RANGE",
                Text::new(
                    "주문 금액이 처리 가능한 범위를 벗어났습니다.",
                    "The amount is too large to process.",
                ),
            ),
            OrderError::Catalog(error) => {
                tracing::warn!(%error, "catalog call failed");
                match error.into_api_error() {
                    Ok(api_error) => api_error,
                    // The catalog's own failure (it answered UNAVAILABLE, INTERNAL...): the
                    // customer cannot be shown prices, which is an outage of the edge.
                    Err(_status) => upstream_unavailable(),
                }
            }
            OrderError::CatalogAnswer(detail) => ApiError::internal(&detail),
            OrderError::Storage(error) if error.is_unavailable() => ApiError::unavailable(&error),
            OrderError::Storage(error) => ApiError::internal(&error),
        }
    }

    pub fn into_status(self, locale: pillivery_platform::error::Locale) -> tonic::Status {
        self.into_api_error().into_status(locale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderStatus, OrderTransition, SubscriptionStatus};

    #[test]
    fn every_refusal_has_its_code_and_reason() {
        let table: Vec<(OrderError, Code, &str)> = vec![
            (
                OrderError::Invalid(vec![]),
                Code::InvalidArgument,
                "VALIDATION_FAILED",
            ),
            (
                OrderError::ItemNotFound(1),
                Code::NotFound,
                "ITEM_NOT_FOUND",
            ),
            (
                OrderError::CartLineNotFound(1),
                Code::NotFound,
                "CART_LINE_NOT_FOUND",
            ),
            (OrderError::CartFull, Code::FailedPrecondition, "CART_FULL"),
            (
                OrderError::OrderNotFound(1),
                Code::NotFound,
                "ORDER_NOT_FOUND",
            ),
            (
                OrderError::SubscriptionNotFound(1),
                Code::NotFound,
                "SUBSCRIPTION_NOT_FOUND",
            ),
            (
                OrderError::InvalidOrderState(InvalidTransition {
                    from: OrderStatus::Paid,
                    transition: OrderTransition::Pay,
                }),
                Code::FailedPrecondition,
                "INVALID_ORDER_STATE",
            ),
            (
                OrderError::InvalidSubscriptionState(InvalidSubscriptionState(
                    SubscriptionStatus::Canceled,
                )),
                Code::FailedPrecondition,
                "INVALID_SUBSCRIPTION_STATE",
            ),
            (
                OrderError::IdempotencyKeyReused,
                Code::AlreadyExists,
                "IDEMPOTENCY_KEY_REUSED",
            ),
            (
                OrderError::AmountMismatch {
                    expected: 1,
                    paid: 2,
                },
                Code::FailedPrecondition,
                "AMOUNT_MISMATCH",
            ),
            (
                OrderError::CycleOutOfOrder {
                    current: 1,
                    reported: 3,
                },
                Code::FailedPrecondition,
                "RENEWAL_CYCLE_MISMATCH",
            ),
            (
                OrderError::Catalog(CallError::CircuitOpen {
                    upstream: "catalog".into(),
                    retry_after: std::time::Duration::from_secs(1),
                }),
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
            ),
            (
                OrderError::Catalog(CallError::Status(tonic::Status::unavailable("down"))),
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
            ),
            (
                OrderError::Catalog(CallError::DeadlineExceeded {
                    upstream: "catalog".into(),
                }),
                Code::DeadlineExceeded,
                "UPSTREAM_TIMEOUT",
            ),
        ];
        for (error, code, reason) in table {
            let api = error.into_api_error();
            assert_eq!((api.code, api.reason.as_ref()), (code, reason));
        }
    }
}
