//! What the catalog consumes from the event bus (SPEC section 8): the sales of paid orders
//! (`OrderPaid`) and of renewals (`SubscriptionRenewed`), published by the order service on its
//! stream.
//!
//! Each event adds its quantities to `items.sales` exactly once: [`CatalogStore::record_sales`]
//! writes the event id into the catalog's inbox (`processed_events`) in the same transaction as
//! the increments, so a redelivered event changes nothing, and the platform's consumer retries
//! what failed and sets aside what can never apply (dead letters, replayable on the admin port).

use pillivery_platform::events::{EventEnvelope, EventHandler, HandlerError, InboxScope};
use pillivery_proto::events as pb;
use prost::Message;

use crate::cache::ResponseCache;
use crate::store::{CatalogStore, StoreError};

/// The stream the order service publishes on.
pub const ORDER_STREAM: &str = "order";

/// The catalog's consumer group.
pub const CONSUMER_GROUP: &str = "catalog";

/// Applies sales events to the items' counters.
pub struct SalesEvents {
    store: CatalogStore,
    cache: ResponseCache,
}

impl SalesEvents {
    pub fn new(store: CatalogStore, cache: ResponseCache) -> SalesEvents {
        SalesEvents { store, cache }
    }
}

/// The sold (item, quantity) pairs an event carries.
fn sold_lines(event: &EventEnvelope) -> Result<Vec<(i64, i64)>, HandlerError> {
    let unreadable =
        |error: prost::DecodeError| HandlerError::Permanent(format!("unreadable payload: {error}"));
    let lines = match event.event_type.as_str() {
        "OrderPaid" => {
            pb::OrderPaid::decode(event.payload.as_slice())
                .map_err(unreadable)?
                .lines
        }
        "SubscriptionRenewed" => pb::SubscriptionRenewed::decode(event.payload.as_slice())
            .map_err(unreadable)?
            .line
            .into_iter()
            .collect(),
        other => {
            return Err(HandlerError::Permanent(format!(
                "not a sales event: {other}"
            )));
        }
    };
    Ok(lines
        .into_iter()
        .map(|line| (line.item_id, i64::from(line.quantity)))
        .collect())
}

#[pillivery_platform::events::async_trait]
impl EventHandler for SalesEvents {
    fn wants(&self, event_type: &str) -> bool {
        matches!(event_type, "OrderPaid" | "SubscriptionRenewed")
    }

    async fn handle(&self, event: &EventEnvelope, _scope: &InboxScope) -> Result<(), HandlerError> {
        let lines = sold_lines(event)?;
        match self.store.record_sales(&event.event_id, &lines).await {
            Ok(true) => {
                // Sales order the SALES sort and the best sellers, and lists show them.
                self.cache.invalidate().await;
                tracing::info!(event_id = %event.event_id, lines = lines.len(), "sales recorded");
                Ok(())
            }
            Ok(false) => Ok(()),
            // A line no rule accepts will not become acceptable on a retry.
            Err(StoreError::Invalid(violations)) => Err(HandlerError::Permanent(format!(
                "sales lines refused: {violations:?}"
            ))),
            Err(error) => Err(HandlerError::Retryable(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn envelope(event_type: &str, payload: Vec<u8>) -> EventEnvelope {
        EventEnvelope {
            event_id: "e-1".into(),
            event_type: event_type.into(),
            aggregate_id: "1".into(),
            occurred_at: Utc::now(),
            traceparent: None,
            payload,
        }
    }

    #[test]
    fn paid_orders_and_renewals_carry_their_lines() {
        let paid = pb::OrderPaid {
            order_id: 1,
            lines: vec![
                pb::SoldLine {
                    item_id: 7,
                    quantity: 2,
                },
                pb::SoldLine {
                    item_id: 9,
                    quantity: 1,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            sold_lines(&envelope("OrderPaid", paid.encode_to_vec())).unwrap(),
            vec![(7, 2), (9, 1)]
        );
        let renewed = pb::SubscriptionRenewed {
            line: Some(pb::SoldLine {
                item_id: 7,
                quantity: 3,
            }),
            ..Default::default()
        };
        assert_eq!(
            sold_lines(&envelope("SubscriptionRenewed", renewed.encode_to_vec())).unwrap(),
            vec![(7, 3)]
        );
    }

    #[test]
    fn unreadable_or_foreign_events_are_permanent_failures() {
        assert!(matches!(
            sold_lines(&envelope("OrderPaid", vec![0xff, 0xff, 0xff])),
            Err(HandlerError::Permanent(_))
        ));
        assert!(matches!(
            sold_lines(&envelope("OrderCanceled", Vec::new())),
            Err(HandlerError::Permanent(_))
        ));
    }
}
