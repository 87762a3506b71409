//! The events the order service publishes (its outbox, stream `order`) and the one it consumes
//! (`UserWithdrawn` from stream `user`).
//!
//! Payloads are the `pillivery.events.v1` messages, protobuf-encoded; the envelope's type is the
//! message name and its aggregate the order or subscription id. The store appends them in the
//! transaction of the change they describe (see [`crate::store`]).
//!
//! Subscription events carry the whole [`events::SubscriptionState`] with its `version`, which
//! increases with every change, so a consumer (the scheduler) can drop a state older than one
//! it already applied.

use chrono::{DateTime, Utc};
use pillivery_platform::events::{EventEnvelope, EventHandler, HandlerError, InboxScope, NewEvent};
use pillivery_platform::time::SharedClock;
use pillivery_proto::events;
use prost::Message;

use crate::store::{OrderRecord, OrderStore, SubscriptionRecord};

/// `OrderCanceled.reason` / `SubscriptionCanceled.reason` of a customer's own cancel.
pub const CANCELED_BY_USER: &str = "USER";
/// `OrderCanceled.reason` of the unpaid-order sweep.
pub const CANCELED_UNPAID: &str = "UNPAID_TIMEOUT";
/// `SubscriptionCanceled.reason` after the owner withdrew.
pub const CANCELED_USER_WITHDRAWN: &str = "USER_WITHDRAWN";

/// The stream the user service publishes to, and this service's consumer group.
pub const USER_STREAM: &str = "user";
pub const CONSUMER_GROUP: &str = "order";

fn event(message: &impl Message, event_type: &str, aggregate_id: i64) -> NewEvent {
    NewEvent::new(
        event_type,
        aggregate_id.to_string(),
        message.encode_to_vec(),
    )
}

fn timestamp(instant: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_nanos() as i32,
    }
}

fn sold_lines(order: &OrderRecord) -> Vec<events::SoldLine> {
    order
        .lines
        .iter()
        .map(|line| events::SoldLine {
            item_id: line.item_id,
            quantity: line.quantity,
        })
        .collect()
}

pub fn order_paid(order: &OrderRecord) -> NewEvent {
    let message = events::OrderPaid {
        order_id: order.order_id,
        user_id: order.user_id,
        lines: sold_lines(order),
        total_price: order.totals.price,
        paid_at: order.paid_at.map(timestamp),
    };
    event(&message, "OrderPaid", order.order_id)
}

pub fn order_canceled(order: &OrderRecord, reason: &str) -> NewEvent {
    let message = events::OrderCanceled {
        order_id: order.order_id,
        user_id: order.user_id,
        reason: reason.to_owned(),
    };
    event(&message, "OrderCanceled", order.order_id)
}

pub fn order_refund_requested(order: &OrderRecord) -> NewEvent {
    let message = events::OrderRefundRequested {
        order_id: order.order_id,
        user_id: order.user_id,
        amount: order.totals.price,
    };
    event(&message, "OrderRefundRequested", order.order_id)
}

pub fn order_refunded(order: &OrderRecord) -> NewEvent {
    let message = events::OrderRefunded {
        order_id: order.order_id,
        user_id: order.user_id,
        amount: order.totals.price,
    };
    event(&message, "OrderRefunded", order.order_id)
}

pub fn subscription_state(subscription: &SubscriptionRecord) -> events::SubscriptionState {
    events::SubscriptionState {
        subscription_id: subscription.subscription_id,
        user_id: subscription.user_id,
        item_id: subscription.item_id,
        quantity: subscription.quantity,
        period_days: subscription.period_days,
        unit_price: subscription.unit_price.real(),
        status: subscription.status.as_str().to_owned(),
        anchor_date: subscription.dates.anchor.to_string(),
        last_billed_date: subscription.dates.last_billed.to_string(),
        next_billing_date: subscription.dates.next_billing.to_string(),
        cycle: subscription.cycle,
        version: subscription.version,
        origin_order_id: subscription.origin_order_id,
    }
}

pub fn subscription_created(subscription: &SubscriptionRecord) -> NewEvent {
    let message = events::SubscriptionCreated {
        subscription: Some(subscription_state(subscription)),
    };
    event(
        &message,
        "SubscriptionCreated",
        subscription.subscription_id,
    )
}

pub fn subscription_changed(subscription: &SubscriptionRecord) -> NewEvent {
    let message = events::SubscriptionChanged {
        subscription: Some(subscription_state(subscription)),
    };
    event(
        &message,
        "SubscriptionChanged",
        subscription.subscription_id,
    )
}

pub fn subscription_canceled(subscription: &SubscriptionRecord, reason: &str) -> NewEvent {
    let message = events::SubscriptionCanceled {
        subscription: Some(subscription_state(subscription)),
        reason: reason.to_owned(),
    };
    event(
        &message,
        "SubscriptionCanceled",
        subscription.subscription_id,
    )
}

pub fn subscription_renewed(subscription: &SubscriptionRecord, renewal_order_id: i64) -> NewEvent {
    let message = events::SubscriptionRenewed {
        subscription: Some(subscription_state(subscription)),
        renewal_order_id,
        line: Some(events::SoldLine {
            item_id: subscription.item_id,
            quantity: subscription.quantity,
        }),
    };
    event(
        &message,
        "SubscriptionRenewed",
        subscription.subscription_id,
    )
}

pub fn subscription_suspended(subscription: &SubscriptionRecord, reason: &str) -> NewEvent {
    let message = events::SubscriptionSuspended {
        subscription: Some(subscription_state(subscription)),
        reason: reason.to_owned(),
    };
    event(
        &message,
        "SubscriptionSuspended",
        subscription.subscription_id,
    )
}

/// Consumes `UserWithdrawn`: the user's ACTIVE and PAST_DUE subscriptions are cancelled, each
/// with its SubscriptionCanceled (so the scheduler drops the job and the payment service
/// deactivates the PG key), in the inbox transaction.
pub struct UserWithdrawnHandler {
    store: OrderStore,
    clock: SharedClock,
}

impl UserWithdrawnHandler {
    pub fn new(store: OrderStore, clock: SharedClock) -> Self {
        Self { store, clock }
    }
}

#[pillivery_platform::events::async_trait]
impl EventHandler for UserWithdrawnHandler {
    fn wants(&self, event_type: &str) -> bool {
        event_type == "UserWithdrawn"
    }

    async fn handle(&self, event: &EventEnvelope, scope: &InboxScope) -> Result<(), HandlerError> {
        let withdrawn =
            events::UserWithdrawn::decode(event.payload.as_slice()).map_err(|error| {
                HandlerError::Permanent(format!("UserWithdrawn does not decode: {error}"))
            })?;
        if withdrawn.user_id <= 0 {
            return Err(HandlerError::Permanent(format!(
                "UserWithdrawn names no user ({})",
                withdrawn.user_id
            )));
        }
        let Some(transaction) = scope.begin().await? else {
            return Ok(());
        };
        let canceled = OrderStore::cancel_user_subscriptions(
            &transaction,
            withdrawn.user_id,
            self.clock.now(),
        )
        .await
        .map_err(|error| HandlerError::Retryable(error.to_string()))?;
        transaction.commit().await?;
        self.store.notify_events_committed();
        tracing::info!(
            user_id = withdrawn.user_id,
            canceled,
            event_id = %event.event_id,
            "subscriptions of a withdrawn user cancelled"
        );
        Ok(())
    }
}
