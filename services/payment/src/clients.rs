//! The payment service's outgoing gRPC edge: the order service's internal RPCs, through the
//! platform's resilient [`Upstream`] (deadline, breaker, bulkhead, retries for idempotent
//! calls only).

use std::time::Duration;

use pillivery_platform::client::{CallError, CallOptions, Upstream};
use pillivery_proto::order as order_pb;
use pillivery_proto::order::order_internal_service_client::OrderInternalServiceClient;
use tonic::Code;

/// How long one call to the order service may take, retries included.
const ORDER_DEADLINE: Duration = Duration::from_secs(5);

/// What the payment flows need from an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderForPayment {
    pub order_id: i64,
    pub user_id: i64,
    pub status: order_pb::OrderStatus,
    pub total_price: i64,
    pub total_quantity: i64,
    pub item_name: String,
    pub has_subscription_lines: bool,
}

/// Why the order service gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum OrderCallError {
    #[error("order {0} does not exist")]
    NotFound(i64),
    /// The order service refused the transition (e.g. not REFUND_PENDING): a business answer.
    #[error("the order service refused ({code:?}): {message}")]
    Refused { code: Code, message: String },
    /// Unreachable, overloaded, breaker open, deadline passed, or a fault answer.
    #[error("the order service is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct OrderClient {
    upstream: Upstream,
}

fn proto_time(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

impl OrderClient {
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }

    fn classify(order_id: i64, error: CallError) -> OrderCallError {
        match error {
            CallError::Status(status) if status.code() == Code::NotFound => {
                OrderCallError::NotFound(order_id)
            }
            CallError::Status(status) if !pillivery_platform::client::is_fault(status.code()) => {
                OrderCallError::Refused {
                    code: status.code(),
                    message: status.message().to_owned(),
                }
            }
            other => OrderCallError::Unavailable(other.to_string()),
        }
    }

    pub async fn order_for_payment(
        &self,
        order_id: i64,
    ) -> Result<OrderForPayment, OrderCallError> {
        let options = CallOptions {
            deadline: ORDER_DEADLINE,
            retryable: true,
        };
        let answer = self
            .upstream
            .call(options, |channel, remaining| async move {
                let mut request =
                    tonic::Request::new(order_pb::GetOrderForPaymentRequest { order_id });
                request.set_timeout(remaining);
                OrderInternalServiceClient::new(channel)
                    .get_order_for_payment(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
            .map_err(|error| Self::classify(order_id, error))?;
        Ok(OrderForPayment {
            order_id: answer.order_id,
            user_id: answer.user_id,
            status: answer.status(),
            total_price: answer.total_price,
            total_quantity: answer.total_quantity,
            item_name: answer.item_name,
            has_subscription_lines: answer.has_subscription_lines,
        })
    }

    /// REQUEST → PAID for payment `tid`; idempotent per tid on the order side.
    pub async fn mark_paid(
        &self,
        order_id: i64,
        tid: &str,
        amount: i64,
        paid_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), OrderCallError> {
        let options = CallOptions {
            deadline: ORDER_DEADLINE,
            retryable: true,
        };
        self.upstream
            .call(options, |channel, remaining| {
                let mut request = tonic::Request::new(order_pb::MarkOrderPaidRequest {
                    order_id,
                    payment_id: tid.to_owned(),
                    amount,
                    paid_at: Some(proto_time(paid_at)),
                });
                request.set_timeout(remaining);
                async move {
                    OrderInternalServiceClient::new(channel)
                        .mark_order_paid(request)
                        .await
                        .map(drop)
                }
            })
            .await
            .map_err(|error| Self::classify(order_id, error))
    }

    /// REFUND_PENDING → REFUNDED; a repeat answers the order again.
    pub async fn mark_refunded(
        &self,
        order_id: i64,
        refunded_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), OrderCallError> {
        let options = CallOptions {
            deadline: ORDER_DEADLINE,
            retryable: true,
        };
        self.upstream
            .call(options, |channel, remaining| async move {
                let mut request = tonic::Request::new(order_pb::MarkOrderRefundedRequest {
                    order_id,
                    refunded_at: Some(proto_time(refunded_at)),
                });
                request.set_timeout(remaining);
                OrderInternalServiceClient::new(channel)
                    .mark_order_refunded(request)
                    .await
                    .map(drop)
            })
            .await
            .map_err(|error| Self::classify(order_id, error))
    }
}
