//! What the payment service consumes: the order service's events (stream `order`, consumer
//! group `payment`), applied exactly once through the platform's inbox (docs/events.md).
//!
//! | event | effect |
//! |---|---|
//! | `OrderRefundRequested` | the refund flow ([`Payments::refund`]): full cancel at the PG, REFUNDED, `MarkOrderRefunded` |
//! | `SubscriptionCreated` | the subscription is linked to its origin order (whose SID bills it) |
//! | `SubscriptionCanceled`, `SubscriptionSuspended` | the link becomes inactive; the SID is inactivated at the PG once no active subscription bills it |
//!
//! The refund and the deactivation call the PG, which must never happen inside a database
//! transaction: those handlers run the flow (its own short transactions, idempotent: a second
//! run finds the payment REFUNDED or the key inactive and sends nothing) *before* the inbox
//! row is written, and leave that row to the consumer. A crash between the flow and the inbox
//! row repeats the flow, which is harmless for the same reason. The link has no PG call, so it
//! is written in the inbox transaction itself.
//!
//! Faults (the PG or the database unreachable, another replica holding the payment's lease)
//! are [`HandlerError::Retryable`]: the consumer retries with backoff and dead-letters the event
//! after `events.max_attempts`, to be replayed from the admin port. Answers that no retry can
//! change (a payload that does not decode, a refund of an order never paid, the PG refusing the
//! refund) are [`HandlerError::Permanent`]: dead-lettered at once, with the reason.

use std::sync::Arc;

use pillivery_platform::events::{EventEnvelope, EventHandler, HandlerError, InboxScope};
use pillivery_proto::events as pb;
use prost::Message;

use crate::clients::OrderCallError;
use crate::error::PaymentError;
use crate::payments::Payments;
use crate::provider::ProviderError;
use crate::store::StoreError;

/// The consumer group (one inbox and one set of dead letters per group).
pub const CONSUMER_GROUP: &str = "payment";
/// The producing service's stream.
pub const ORDER_STREAM: &str = "order";

pub const ORDER_REFUND_REQUESTED: &str = "OrderRefundRequested";
pub const SUBSCRIPTION_CREATED: &str = "SubscriptionCreated";
pub const SUBSCRIPTION_CANCELED: &str = "SubscriptionCanceled";
pub const SUBSCRIPTION_SUSPENDED: &str = "SubscriptionSuspended";

/// Every event type the payment service handles; the consumer skips the others.
pub const HANDLED_EVENTS: [&str; 4] = [
    ORDER_REFUND_REQUESTED,
    SUBSCRIPTION_CREATED,
    SUBSCRIPTION_CANCELED,
    SUBSCRIPTION_SUSPENDED,
];

/// The payment service's [`EventHandler`].
pub struct PaymentEvents {
    payments: Arc<Payments>,
}

impl PaymentEvents {
    pub fn new(payments: Arc<Payments>) -> Self {
        Self { payments }
    }

    async fn refund_requested(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let message = decode::<pb::OrderRefundRequested>(event)?;
        if message.order_id <= 0 {
            return Err(HandlerError::Permanent(format!(
                "{} names order {}",
                event.event_type, message.order_id
            )));
        }
        // The PG call happens here, before (and without) any inbox transaction.
        let refunded = self
            .payments
            .refund(message.order_id)
            .await
            .map_err(handler_error)?;
        if message.amount != 0 && refunded.refunded_amount != message.amount {
            // The refund is always the whole approved payment; a different amount in the event
            // means the two services disagree about the order, which someone must look at.
            tracing::error!(
                order_id = message.order_id,
                requested = message.amount,
                refunded = refunded.refunded_amount,
                "refunded another amount than the order asked for"
            );
        }
        tracing::info!(
            event_id = %event.event_id,
            order_id = message.order_id,
            amount = refunded.refunded_amount,
            "refund requested by the order service: refunded"
        );
        Ok(())
    }

    async fn subscription_created(
        &self,
        event: &EventEnvelope,
        scope: &InboxScope,
    ) -> Result<(), HandlerError> {
        let state = subscription_state(event)?;
        let Some(transaction) = scope.begin().await? else {
            return Ok(());
        };
        let link = self
            .payments
            .store()
            .ensure_link_on(&transaction, state.subscription_id, state.origin_order_id)
            .await
            .map_err(store_error)?;
        transaction.commit().await?;
        if link.origin_order_id != state.origin_order_id {
            // The first link wins (a charge may have recorded it from its own request); a
            // subscription never moves to another order's key.
            tracing::warn!(
                subscription_id = state.subscription_id,
                recorded = link.origin_order_id,
                announced = state.origin_order_id,
                "subscription already linked to another origin order"
            );
        }
        tracing::debug!(
            subscription_id = state.subscription_id,
            origin_order_id = link.origin_order_id,
            active = link.active,
            "subscription linked"
        );
        Ok(())
    }

    async fn subscription_ended(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let state = subscription_state(event)?;
        // The PG call (the SID's deactivation) happens here, before any inbox transaction.
        let key_inactive = self
            .payments
            .inactivate_subscription(state.subscription_id, state.origin_order_id)
            .await
            .map_err(handler_error)?;
        tracing::info!(
            event_id = %event.event_id,
            event_type = %event.event_type,
            subscription_id = state.subscription_id,
            origin_order_id = state.origin_order_id,
            key_inactive,
            "subscription ended: link inactive"
        );
        Ok(())
    }
}

#[pillivery_platform::events::async_trait]
impl EventHandler for PaymentEvents {
    fn wants(&self, event_type: &str) -> bool {
        HANDLED_EVENTS.contains(&event_type)
    }

    async fn handle(&self, event: &EventEnvelope, scope: &InboxScope) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            ORDER_REFUND_REQUESTED => self.refund_requested(event).await,
            SUBSCRIPTION_CREATED => self.subscription_created(event, scope).await,
            SUBSCRIPTION_CANCELED | SUBSCRIPTION_SUSPENDED => self.subscription_ended(event).await,
            other => Err(HandlerError::Permanent(format!(
                "the payment service does not handle {other}"
            ))),
        }
    }
}

fn decode<M: Message + Default>(event: &EventEnvelope) -> Result<M, HandlerError> {
    M::decode(event.payload.as_slice()).map_err(|error| {
        HandlerError::Permanent(format!("{} does not decode: {error}", event.event_type))
    })
}

/// The subscription a subscription event is about, with the ids the payment service needs.
fn subscription_state(event: &EventEnvelope) -> Result<pb::SubscriptionState, HandlerError> {
    let state = match event.event_type.as_str() {
        SUBSCRIPTION_CREATED => decode::<pb::SubscriptionCreated>(event)?.subscription,
        SUBSCRIPTION_CANCELED => decode::<pb::SubscriptionCanceled>(event)?.subscription,
        SUBSCRIPTION_SUSPENDED => decode::<pb::SubscriptionSuspended>(event)?.subscription,
        other => {
            return Err(HandlerError::Permanent(format!(
                "not a subscription event the payment service handles: {other}"
            )));
        }
    };
    let state = state.ok_or_else(|| {
        HandlerError::Permanent(format!("{} carries no subscription", event.event_type))
    })?;
    // Without the origin order the SID is unknown: no retry can fix that.
    if state.subscription_id <= 0 || state.origin_order_id <= 0 {
        return Err(HandlerError::Permanent(format!(
            "{} names subscription {} of origin order {}",
            event.event_type, state.subscription_id, state.origin_order_id
        )));
    }
    Ok(state)
}

fn store_error(error: StoreError) -> HandlerError {
    match error {
        StoreError::Database(error) => HandlerError::from(error),
        corrupt @ StoreError::Corrupt { .. } => HandlerError::Permanent(corrupt.to_string()),
    }
}

/// Whether a flow's failure may go away by itself (retry) or needs a person (dead letter).
pub fn handler_error(error: PaymentError) -> HandlerError {
    let retryable = match &error {
        // The PG said no: the same request gets the same answer.
        PaymentError::Pg(ProviderError::Declined { .. }) => false,
        // Timeouts, 5xx, connection errors, an open breaker: the PG may recover.
        PaymentError::Pg(_) => true,
        // Another replica holds the payment's lease; it finishes or the lease lapses.
        PaymentError::PaymentInProgress | PaymentError::ChargeInProgress => true,
        PaymentError::Storage(StoreError::Database(_)) => true,
        PaymentError::Storage(StoreError::Corrupt { .. }) => false,
        PaymentError::Order(OrderCallError::Unavailable(_)) => true,
        PaymentError::Order(_) => false,
        // Not paid here, refused by the PG, invalid ids: the event itself is the problem.
        _ => false,
    };
    let reason = error.to_string();
    if retryable {
        HandlerError::Retryable(reason)
    } else {
        HandlerError::Permanent(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(event_type: &str, payload: Vec<u8>) -> EventEnvelope {
        EventEnvelope {
            event_id: "e-1".into(),
            event_type: event_type.into(),
            aggregate_id: "1".into(),
            occurred_at: chrono::Utc::now(),
            traceparent: None,
            payload,
        }
    }

    #[test]
    fn subscription_events_need_both_ids() {
        let state = |subscription_id, origin_order_id| pb::SubscriptionState {
            subscription_id,
            origin_order_id,
            ..Default::default()
        };
        let created = |state| {
            envelope(
                SUBSCRIPTION_CREATED,
                pb::SubscriptionCreated {
                    subscription: Some(state),
                }
                .encode_to_vec(),
            )
        };
        assert_eq!(
            subscription_state(&created(state(5, 9))).unwrap(),
            state(5, 9)
        );
        for bad in [state(0, 9), state(5, 0)] {
            assert!(matches!(
                subscription_state(&created(bad)),
                Err(HandlerError::Permanent(_))
            ));
        }
        let empty = envelope(
            SUBSCRIPTION_SUSPENDED,
            pb::SubscriptionSuspended::default().encode_to_vec(),
        );
        let Err(HandlerError::Permanent(reason)) = subscription_state(&empty) else {
            panic!("a subscription event without a subscription is permanent");
        };
        assert!(reason.contains("carries no subscription"), "{reason}");
        let garbage = envelope(SUBSCRIPTION_CANCELED, vec![0xff, 0xff, 0xff]);
        assert!(matches!(
            subscription_state(&garbage),
            Err(HandlerError::Permanent(_))
        ));
    }

    #[test]
    fn faults_are_retried_and_refusals_dead_lettered() {
        let retried = [
            PaymentError::Pg(ProviderError::NotSent("breaker open".into())),
            PaymentError::Pg(ProviderError::Unknown("timeout".into())),
            PaymentError::PaymentInProgress,
            PaymentError::Storage(StoreError::Database(sea_orm::DbErr::Custom("down".into()))),
            PaymentError::Order(OrderCallError::Unavailable("down".into())),
        ];
        for error in retried {
            assert!(
                matches!(handler_error(error), HandlerError::Retryable(_)),
                "retryable"
            );
        }
        let dead = [
            PaymentError::PaymentNotFound(1),
            PaymentError::RefundRefused { code: "-8".into() },
            PaymentError::Pg(ProviderError::Declined {
                code: "-721".into(),
                message: "no such tid".into(),
            }),
        ];
        for error in dead {
            assert!(
                matches!(handler_error(error), HandlerError::Permanent(_)),
                "permanent"
            );
        }
    }
}
