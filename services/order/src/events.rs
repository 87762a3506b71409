//! The event the order service consumes: `UserWithdrawn` from the user service's stream. What
//! it publishes is built in [`crate::store::events`], next to the writes it describes.

use pillivery_platform::events::{EventEnvelope, EventHandler, HandlerError, InboxScope};
use pillivery_platform::time::SharedClock;
use pillivery_proto::events;
use prost::Message;

use crate::store::OrderStore;

/// The stream the user service publishes to, and this service's consumer group.
pub const USER_STREAM: &str = "user";
pub const CONSUMER_GROUP: &str = "order";

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
