//! Integration events between services (SPEC section 8), delivered at least once and applied
//! exactly once.
//!
//! The pieces, in the order an event meets them:
//!
//! - [`outbox::append`]: a service writes the event into its own `outbox_events` table in the
//!   same transaction as the state change, so an event exists if and only if the change
//!   committed.
//! - [`Relay`]: one task per service (one active replica, elected with a Redlock lease) that
//!   publishes unpublished outbox rows in id order to the [`EventBus`] and then marks them
//!   published. A crash between the two publishes again; consumers make that harmless.
//! - [`EventBus`]: Redis Streams in production, an in-process bus with the same semantics
//!   (consumer groups, pending entries, acknowledgement, claiming stale entries) in the embedded
//!   fleet. One stream per producing service.
//! - [`Consumer`]: one task per consuming service and group, calling an [`EventHandler`] for each
//!   event. The handler applies its effect in the transaction [`InboxScope::begin`] opens, which
//!   also records the event id in `inbox_events`: a redelivered event finds its id and changes
//!   nothing. Failures are retried with jittered backoff; an event that keeps failing lands in
//!   `dead_letters` with its reason, and [`dead_letters::replay`] (or the admin routes from
//!   [`admin_routes`]) runs it again once the cause is fixed.
//!
//! The platform never interprets an event's payload: it is the protobuf encoding of a message
//! from `pillivery.events.v1`, chosen by the producer and decoded by the consumer.
//! `docs/events.md` explains the guarantees and the failure cases.

mod admin;
mod bus;
mod config;
mod consumer;
pub mod dead_letters;
mod entity;
pub mod migration;
pub mod outbox;
mod relay;

use chrono::{DateTime, Utc};

pub use admin::admin_routes;
pub use bus::{BusBackend, BusError, Delivery, EventBus};
pub use config::EventsConfig;
pub use consumer::{Consumer, EventHandler, HandlerError, InboxScope};
pub use dead_letters::{DeadLetter, DeadLetters};
pub use relay::{Relay, RelayWaker};

/// Re-exported so a service implements [`EventHandler`] without its own `async-trait` dependency:
/// `#[pillivery_platform::events::async_trait]`.
pub use async_trait::async_trait;

/// One event as it travels: what the producer wrote plus what the outbox added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventEnvelope {
    /// UUID v7 (time-ordered), unique across the fleet; the inbox key of every consumer.
    pub event_id: String,
    /// The event's name, e.g. `OrderPaid`: consumers pick what they handle by it.
    pub event_type: String,
    /// The entity the event is about (an order id, a subscription id); events of one aggregate
    /// are delivered in the order they were written.
    pub aggregate_id: String,
    /// When the producing transaction wrote the event, to the microsecond.
    pub occurred_at: DateTime<Utc>,
    /// The W3C trace context of the span that wrote the event, continued by each consumer.
    pub traceparent: Option<String>,
    /// The protobuf-encoded event message; opaque to the platform.
    pub payload: Vec<u8>,
}

/// What a producer supplies to [`outbox::append`]; the outbox adds the id, the time and the
/// trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub event_type: String,
    pub aggregate_id: String,
    pub payload: Vec<u8>,
}

impl NewEvent {
    pub fn new(
        event_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            event_type: event_type.into(),
            aggregate_id: aggregate_id.into(),
            payload: payload.into(),
        }
    }
}

/// The longest event id, type, stream or consumer name the tables accept (`VARCHAR(100)`).
pub const MAX_NAME_CHARS: usize = 100;
/// The longest aggregate id the tables accept (`VARCHAR(255)`).
pub const MAX_AGGREGATE_ID_CHARS: usize = 255;
