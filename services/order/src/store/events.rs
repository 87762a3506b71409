//! The events the order service publishes (its outbox, stream `order`), built from the records
//! the store has just written.
//!
//! Payloads are the `pillivery.events.v1` messages, protobuf-encoded; the envelope's type is the
//! message name and its aggregate the order or subscription id. The store appends them in the
//! transaction of the change they describe.
//!
//! Subscription events carry the whole [`events::SubscriptionState`] with its `version`, which
//! increases with every change, so a consumer (the scheduler) can drop a state older than one
//! it already applied.

use chrono::{DateTime, Utc};
use pillivery_platform::events::NewEvent;
use pillivery_proto::events;
use prost::Message;

use super::{OrderRecord, SubscriptionRecord};

/// `OrderCanceled.reason` / `SubscriptionCanceled.reason` of a customer's own cancel.
pub const CANCELED_BY_USER: &str = "USER";
/// `OrderCanceled.reason` of the unpaid-order sweep.
pub const CANCELED_UNPAID: &str = "UNPAID_TIMEOUT";
/// `SubscriptionCanceled.reason` after the owner withdrew.
pub const CANCELED_USER_WITHDRAWN: &str = "USER_WITHDRAWN";

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
