//! The scheduler's outgoing edges: the order service (the subscription's truth, renewals and
//! failures) and the payment service (the charge), each through the platform's [`Upstream`]
//! (deadline, breaker, bulkhead; retries of UNAVAILABLE only, and every call here is safe to
//! repeat: reads, or writes keyed by `(subscription, cycle)`).
//!
//! Failures are sorted by what billing must do about them ([`CallFailure`]): a call that never
//! left (breaker open, bulkhead full) is no attempt at all; a fault may or may not have reached
//! the other side; a refusal is the neighbour's business answer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pillivery_platform::client::{CallError, CallOptions, Upstream, is_fault};
use pillivery_proto::order as order_pb;
use pillivery_proto::order::order_internal_service_client::OrderInternalServiceClient;
use pillivery_proto::payment as payment_pb;
use pillivery_proto::payment::payment_internal_service_client::PaymentInternalServiceClient;
use tonic::Code;

use crate::domain::{JobStatus, SubscriptionSnapshot, format_date, parse_date};

/// Why a neighbour gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The call was not sent: this replica's breaker is open or its bulkhead full.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Unreachable, timed out, or a fault answer: it may or may not have been processed.
    #[error("fault: {0}")]
    Fault(String),
    /// A business answer refusing the call (not found, failed precondition, invalid…).
    #[error("refused ({code:?}): {message}")]
    Refused { code: Code, message: String },
}

impl CallFailure {
    fn from_call(error: CallError) -> CallFailure {
        match error {
            CallError::CircuitOpen { .. } | CallError::Overloaded { .. } => {
                CallFailure::NotSent(error.to_string())
            }
            CallError::DeadlineExceeded { .. } => CallFailure::Fault(error.to_string()),
            CallError::Status(status) if is_fault(status.code()) => {
                CallFailure::Fault(format!("{:?}: {}", status.code(), status.message()))
            }
            CallError::Status(status) => CallFailure::Refused {
                code: status.code(),
                message: status.message().to_owned(),
            },
        }
    }
}

/// What the payment service answered to a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeAnswer {
    Charged { charged_at: Option<DateTime<Utc>> },
    Declined { reason: String },
}

/// One renewal charge, as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    pub subscription_id: i64,
    pub cycle: i32,
    pub attempt: i32,
    pub amount: i64,
    pub user_id: i64,
    pub origin_order_id: i64,
    pub item_name: String,
    pub quantity: i32,
}

/// The two neighbours billing talks to.
#[derive(Clone)]
pub struct Neighbours {
    order: Upstream,
    payment: Upstream,
    order_deadline: Duration,
    charge_deadline: Duration,
}

impl Neighbours {
    pub fn new(
        order: Upstream,
        payment: Upstream,
        order_deadline: Duration,
        charge_deadline: Duration,
    ) -> Self {
        Neighbours {
            order,
            payment,
            order_deadline,
            charge_deadline,
        }
    }

    fn order_options(&self) -> CallOptions {
        CallOptions {
            deadline: self.order_deadline,
            retryable: true,
        }
    }

    /// The subscription as billing must see it; `None` when the order service has no such
    /// subscription.
    pub async fn subscription(
        &self,
        subscription_id: i64,
    ) -> Result<Option<SubscriptionSnapshot>, CallFailure> {
        let answer = self
            .order
            .call(self.order_options(), |channel, remaining| async move {
                let mut request = tonic::Request::new(order_pb::GetSubscriptionForBillingRequest {
                    subscription_id,
                });
                request.set_timeout(remaining);
                OrderInternalServiceClient::new(channel)
                    .get_subscription_for_billing(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await;
        match answer {
            Ok(subscription) => snapshot(&subscription).map(Some),
            Err(CallError::Status(status)) if status.code() == Code::NotFound => Ok(None),
            Err(error) => Err(CallFailure::from_call(error)),
        }
    }

    /// Records the charged renewal of `cycle` (exactly once per cycle on the order side) and
    /// answers the subscription after it.
    pub async fn record_renewal(
        &self,
        subscription_id: i64,
        cycle: i32,
        billed_date: chrono::NaiveDate,
        amount: i64,
        charged_at: DateTime<Utc>,
    ) -> Result<Option<SubscriptionSnapshot>, CallFailure> {
        let billed_date = format_date(billed_date);
        let answer = self
            .order
            .call(self.order_options(), |channel, remaining| {
                let mut request = tonic::Request::new(order_pb::RecordRenewalRequest {
                    subscription_id,
                    cycle,
                    billed_date: billed_date.clone(),
                    amount,
                    charged_at: Some(timestamp(charged_at)),
                });
                request.set_timeout(remaining);
                async move {
                    OrderInternalServiceClient::new(channel)
                        .record_renewal(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await
            .map_err(CallFailure::from_call)?;
        answer.subscription.as_ref().map(snapshot).transpose()
    }

    /// Tells the order service attempt `attempt` at `cycle` failed; `final` suspends the
    /// subscription (which deactivates its PG key through the SubscriptionSuspended event). A
    /// repeated report of one attempt changes nothing there.
    pub async fn record_failure(
        &self,
        subscription_id: i64,
        cycle: i32,
        attempt: i32,
        is_final: bool,
        reason: &str,
    ) -> Result<(), CallFailure> {
        self.order
            .call(self.order_options(), |channel, remaining| {
                let mut request = tonic::Request::new(order_pb::RecordRenewalFailureRequest {
                    subscription_id,
                    cycle,
                    r#final: is_final,
                    reason: reason.to_owned(),
                    attempt,
                });
                request.set_timeout(remaining);
                async move {
                    OrderInternalServiceClient::new(channel)
                        .record_renewal_failure(request)
                        .await
                        .map(drop)
                }
            })
            .await
            .map_err(CallFailure::from_call)
    }

    /// One charge; a repeat with the same `(subscription, cycle, attempt)` answers the first
    /// outcome, so a retry after a fault can never charge twice.
    pub async fn charge(&self, charge: &ChargeRequest) -> Result<ChargeAnswer, CallFailure> {
        let options = CallOptions {
            deadline: self.charge_deadline,
            retryable: true,
        };
        let answer = self
            .payment
            .call(options, |channel, remaining| {
                let mut request = tonic::Request::new(payment_pb::ChargeSubscriptionRequest {
                    subscription_id: charge.subscription_id,
                    cycle: charge.cycle,
                    amount: charge.amount,
                    user_id: charge.user_id,
                    origin_order_id: charge.origin_order_id,
                    item_name: charge.item_name.clone(),
                    quantity: charge.quantity,
                    attempt: charge.attempt,
                });
                request.set_timeout(remaining);
                async move {
                    PaymentInternalServiceClient::new(channel)
                        .charge_subscription(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await
            .map_err(CallFailure::from_call)?;
        match answer.outcome() {
            payment_pb::ChargeOutcome::Charged => Ok(ChargeAnswer::Charged {
                charged_at: answer.charged_at.and_then(|at| {
                    DateTime::<Utc>::from_timestamp(
                        at.seconds,
                        u32::try_from(at.nanos).unwrap_or(0),
                    )
                }),
            }),
            payment_pb::ChargeOutcome::Declined => Ok(ChargeAnswer::Declined {
                reason: format!("{} {}", answer.decline_code, answer.decline_message)
                    .trim()
                    .to_owned(),
            }),
            // An answer without an outcome says nothing about money: treated like a fault, so
            // the same attempt is asked again and the payment service resolves it.
            payment_pb::ChargeOutcome::Unspecified => Err(CallFailure::Fault(
                "the payment service answered without an outcome".into(),
            )),
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The order service's `Subscription` as the domain reads it; an answer billing cannot use
/// (an unknown status, a malformed date) is a refusal, never a guess.
fn snapshot(subscription: &order_pb::Subscription) -> Result<SubscriptionSnapshot, CallFailure> {
    let malformed = |what: &str, value: &str| CallFailure::Refused {
        code: Code::Internal,
        message: format!(
            "subscription {} has an unusable {what}: {value:?}",
            subscription.subscription_id
        ),
    };
    let status = match subscription.status() {
        order_pb::SubscriptionStatus::Active => JobStatus::Active,
        order_pb::SubscriptionStatus::PastDue => JobStatus::PastDue,
        order_pb::SubscriptionStatus::Suspended => JobStatus::Suspended,
        order_pb::SubscriptionStatus::Canceled => JobStatus::Canceled,
        order_pb::SubscriptionStatus::Unspecified => {
            return Err(malformed("status", "UNSPECIFIED"));
        }
    };
    let next_billing_date = parse_date(&subscription.next_billing_date)
        .ok_or_else(|| malformed("next_billing_date", &subscription.next_billing_date))?;
    let last_billed_date = match subscription.last_billed_date.as_str() {
        "" => None,
        text => Some(parse_date(text).ok_or_else(|| malformed("last_billed_date", text))?),
    };
    Ok(SubscriptionSnapshot {
        subscription_id: subscription.subscription_id,
        item_id: subscription.item_id,
        product_name: subscription.product_name.clone(),
        quantity: subscription.quantity,
        period_days: subscription.period_days,
        unit_price: subscription.unit_price,
        status,
        last_billed_date,
        next_billing_date,
        cycle: subscription.cycle,
    })
}
