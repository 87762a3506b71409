//! What the scheduler consumes: the order service's subscription events (stream `order`,
//! consumer group `scheduler`). Each carries the subscription's whole `SubscriptionState` with
//! its version, so every type is applied the same way (`store::SchedulerStore::apply_state`),
//! inside the inbox transaction: a redelivered event changes nothing, an older one is ignored.
//!
//! The scheduler publishes nothing: what billing changes, the order service records and
//! announces (renewals, suspensions).

use chrono::NaiveDate;
use pillivery_platform::events::{EventEnvelope, EventHandler, HandlerError, InboxScope};
use pillivery_platform::time::SharedClock;
use pillivery_proto::events as pb;
use prost::Message;

use crate::domain::{JobStatus, SubscriptionState, parse_date};
use crate::store::{Applied, SchedulerStore, StoreError};

/// The consumer group (one inbox per group).
pub const CONSUMER_GROUP: &str = "scheduler";
/// The producing service's stream.
pub const ORDER_STREAM: &str = "order";

/// The event types that carry a subscription's state.
pub const SUBSCRIPTION_EVENTS: [&str; 5] = [
    "SubscriptionCreated",
    "SubscriptionChanged",
    "SubscriptionCanceled",
    "SubscriptionRenewed",
    "SubscriptionSuspended",
];

/// Applies subscription events to billing jobs.
pub struct SubscriptionEvents {
    clock: SharedClock,
}

impl SubscriptionEvents {
    pub fn new(clock: SharedClock) -> Self {
        SubscriptionEvents { clock }
    }
}

/// The state inside a subscription event's payload.
pub fn decode_state(event_type: &str, payload: &[u8]) -> Result<SubscriptionState, HandlerError> {
    let undecodable = |error: prost::DecodeError| {
        HandlerError::Permanent(format!("{event_type} does not decode: {error}"))
    };
    let state = match event_type {
        "SubscriptionCreated" => {
            pb::SubscriptionCreated::decode(payload)
                .map_err(undecodable)?
                .subscription
        }
        "SubscriptionChanged" => {
            pb::SubscriptionChanged::decode(payload)
                .map_err(undecodable)?
                .subscription
        }
        "SubscriptionCanceled" => {
            pb::SubscriptionCanceled::decode(payload)
                .map_err(undecodable)?
                .subscription
        }
        "SubscriptionRenewed" => {
            pb::SubscriptionRenewed::decode(payload)
                .map_err(undecodable)?
                .subscription
        }
        "SubscriptionSuspended" => {
            pb::SubscriptionSuspended::decode(payload)
                .map_err(undecodable)?
                .subscription
        }
        other => {
            return Err(HandlerError::Permanent(format!(
                "not a subscription event: {other}"
            )));
        }
    };
    let state = state
        .ok_or_else(|| HandlerError::Permanent(format!("{event_type} carries no subscription")))?;
    domain_state(&state).map_err(HandlerError::Permanent)
}

fn domain_state(state: &pb::SubscriptionState) -> Result<SubscriptionState, String> {
    let status = JobStatus::parse(&state.status)
        .ok_or_else(|| format!("unknown subscription status {:?}", state.status))?;
    let date = |name: &str, text: &str| -> Result<NaiveDate, String> {
        parse_date(text).ok_or_else(|| format!("{name} is not a date: {text:?}"))
    };
    if state.subscription_id <= 0 {
        return Err(format!(
            "subscription id {} is not positive",
            state.subscription_id
        ));
    }
    Ok(SubscriptionState {
        subscription_id: state.subscription_id,
        user_id: state.user_id,
        item_id: state.item_id,
        quantity: state.quantity,
        period_days: state.period_days,
        unit_price: state.unit_price,
        status,
        last_billed_date: match state.last_billed_date.as_str() {
            "" => None,
            text => Some(date("last_billed_date", text)?),
        },
        next_billing_date: date("next_billing_date", &state.next_billing_date)?,
        cycle: state.cycle,
        version: state.version,
        origin_order_id: state.origin_order_id,
    })
}

#[pillivery_platform::events::async_trait]
impl EventHandler for SubscriptionEvents {
    fn wants(&self, event_type: &str) -> bool {
        SUBSCRIPTION_EVENTS.contains(&event_type)
    }

    async fn handle(&self, event: &EventEnvelope, scope: &InboxScope) -> Result<(), HandlerError> {
        let state = decode_state(&event.event_type, &event.payload)?;
        let applied = apply(scope, &state, self.clock.now()).await?;
        tracing::debug!(
            event_id = %event.event_id,
            event_type = %event.event_type,
            subscription_id = state.subscription_id,
            version = state.version,
            ?applied,
            "subscription event"
        );
        Ok(())
    }
}

/// Applies `state` in the inbox transaction of `scope`.
pub async fn apply(
    scope: &InboxScope,
    state: &SubscriptionState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Applied, HandlerError> {
    let Some(transaction) = scope.begin().await? else {
        return Ok(Applied::AlreadyApplied);
    };
    let applied = SchedulerStore::apply_state(&transaction, state, now)
        .await
        .map_err(|error| match error {
            StoreError::Database(error) => HandlerError::from(error),
            corrupt @ StoreError::Corrupt { .. } => HandlerError::Permanent(corrupt.to_string()),
        })?;
    transaction.commit().await?;
    Ok(applied)
}
