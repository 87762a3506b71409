//! The use cases: what one call does, in order — check the input with [`crate::domain`], ask
//! the catalog (never inside a transaction), write through [`crate::store`].
//!
//! Nothing here knows the wire: [`crate::grpc`] maps messages to these calls and back.

use std::collections::HashMap;

use chrono::NaiveDate;
use pillivery_platform::time::SharedClock;

use crate::clients::CatalogClient;
use crate::domain::cart::{self, cart_view};
use crate::domain::order::{self, SnapshotError};
use crate::domain::{
    CartKind, CartView, ItemSnapshot, OrderInput, OrderStatus, Page, PageRequest,
    SubscriptionChange,
};
use crate::error::OrderError;
use crate::store::{OrderRecord, OrderStore, SubscriptionRecord};

type Result<T> = std::result::Result<T, OrderError>;

/// Orders cancelled per sweep statement batch.
const SWEEP_BATCH: u64 = 100;

#[derive(Clone)]
pub struct OrderService {
    store: OrderStore,
    catalog: CatalogClient,
    clock: SharedClock,
    unpaid_timeout: chrono::Duration,
}

impl OrderService {
    pub fn new(
        store: OrderStore,
        catalog: CatalogClient,
        clock: SharedClock,
        unpaid_timeout: chrono::Duration,
    ) -> Self {
        Self {
            store,
            catalog,
            clock,
            unpaid_timeout,
        }
    }

    pub fn store(&self) -> &OrderStore {
        &self.store
    }

    // ----- carts ---------------------------------------------------------------------------

    /// The cart with live prices (an empty cart asks the catalog nothing).
    pub async fn cart(&self, user_id: i64, kind: CartKind) -> Result<CartView> {
        let lines = self.store.cart_lines(user_id, kind).await?;
        if lines.is_empty() {
            return Ok(CartView::default());
        }
        let ids: Vec<i64> = lines.iter().map(|line| line.item_id).collect();
        let items = self.catalog.items(&ids).await?;
        Ok(cart_view(&lines, &items)?)
    }

    pub async fn add_cart_line(
        &self,
        user_id: i64,
        kind: &str,
        item_id: i64,
        quantity: i32,
        period_days: Option<i32>,
    ) -> Result<CartView> {
        let kind = CartKind::parse(kind)?;
        let line = cart::new_line(kind, item_id, quantity, period_days)?;
        // Only items the catalog sells may enter a cart.
        if !self
            .catalog
            .items(&[line.item_id])
            .await?
            .contains_key(&line.item_id)
        {
            return Err(OrderError::ItemNotFound(line.item_id));
        }
        self.store
            .add_cart_line(user_id, line, self.clock.now())
            .await?;
        self.cart(user_id, kind).await
    }

    pub async fn update_cart_line(
        &self,
        user_id: i64,
        kind: &str,
        item_id: i64,
        quantity: Option<i32>,
        period_days: Option<i32>,
    ) -> Result<CartView> {
        let kind = CartKind::parse(kind)?;
        let change = cart::line_change(kind, quantity, period_days)?;
        self.store
            .update_cart_line(user_id, kind, item_id, change, self.clock.now())
            .await?;
        self.cart(user_id, kind).await
    }

    pub async fn remove_cart_line(&self, user_id: i64, kind: &str, item_id: i64) -> Result<()> {
        let kind = CartKind::parse(kind)?;
        self.store.remove_cart_line(user_id, kind, item_id).await
    }

    // ----- orders --------------------------------------------------------------------------

    /// Checkout. Answers the encoded first response for `(user_id, key)`: a replay of a known
    /// key with the same body answers what the first call answered; another body is 409.
    pub async fn create_order(
        &self,
        user_id: i64,
        key: Option<&str>,
        input: &OrderInput,
        encode: impl Fn(&OrderRecord) -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        let key = order::check_idempotency_key(key)?;
        let request_hash = input.request_hash();
        if let Some(answer) = self
            .store
            .idempotent_answer(user_id, &key, &request_hash)
            .await?
        {
            return Ok(answer);
        }
        let valid = order::validate(input)?;
        let items: HashMap<i64, ItemSnapshot> = self.catalog.items(&valid.item_ids()).await?;
        let new_order = order::snapshot(user_id, &valid, &items).map_err(|error| match error {
            SnapshotError::MissingItem(item_id) => OrderError::ItemNotFound(item_id),
            SnapshotError::Overflow(_) => OrderError::AmountOutOfRange,
        })?;
        self.store
            .create_order(&new_order, &key, &request_hash, self.clock.now(), encode)
            .await
    }

    pub async fn list_orders(
        &self,
        user_id: i64,
        status: Option<OrderStatus>,
        page: PageRequest,
    ) -> Result<Page<OrderRecord>> {
        self.store.list_orders(user_id, status, page).await
    }

    pub async fn order(&self, user_id: i64, order_id: i64) -> Result<OrderRecord> {
        self.store.owned_order(user_id, order_id).await
    }

    pub async fn cancel_order(&self, user_id: i64, order_id: i64) -> Result<OrderRecord> {
        self.store
            .cancel_order(user_id, order_id, self.clock.now())
            .await
    }

    /// Cancels every order unpaid for longer than the configured timeout, by the clock;
    /// answers how many. Safe to run on every replica at once.
    pub async fn cancel_unpaid_orders(&self) -> Result<usize> {
        let now = self.clock.now();
        let cutoff = now - self.unpaid_timeout;
        let mut total = 0;
        loop {
            let canceled = self.store.cancel_unpaid(cutoff, now, SWEEP_BATCH).await?;
            total += canceled;
            if (canceled as u64) < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    // ----- internal ------------------------------------------------------------------------

    pub async fn order_for_payment(&self, order_id: i64) -> Result<OrderRecord> {
        self.store
            .order(order_id)
            .await?
            .ok_or(OrderError::OrderNotFound(order_id))
    }

    pub async fn mark_paid(
        &self,
        order_id: i64,
        payment_id: &str,
        amount: i64,
        paid_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<OrderRecord> {
        if payment_id.trim().is_empty() || payment_id.chars().count() > 200 {
            return Err(required("paymentId", payment_id));
        }
        let paid_at = paid_at.unwrap_or_else(|| self.clock.now());
        self.store
            .mark_paid(order_id, payment_id, amount, paid_at)
            .await
    }

    pub async fn mark_refunded(&self, order_id: i64) -> Result<OrderRecord> {
        self.store.mark_refunded(order_id, self.clock.now()).await
    }

    pub async fn subscription_for_billing(
        &self,
        subscription_id: i64,
    ) -> Result<SubscriptionRecord> {
        self.store
            .subscription(subscription_id)
            .await?
            .ok_or(OrderError::SubscriptionNotFound(subscription_id))
    }

    pub async fn record_renewal(
        &self,
        subscription_id: i64,
        cycle: i32,
        billed_date: &str,
        amount: i64,
        charged_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(SubscriptionRecord, i64)> {
        let billed_on: NaiveDate = billed_date
            .parse()
            .map_err(|_| required("billedDate", billed_date))?;
        let charged_at = charged_at.unwrap_or_else(|| self.clock.now());
        self.store
            .record_renewal(subscription_id, cycle, billed_on, amount, charged_at)
            .await
    }

    pub async fn record_renewal_failure(
        &self,
        subscription_id: i64,
        cycle: i32,
        attempt: i32,
        last: bool,
        reason: &str,
    ) -> Result<SubscriptionRecord> {
        self.store
            .record_renewal_failure(
                subscription_id,
                cycle,
                attempt,
                last,
                reason,
                self.clock.now(),
            )
            .await
    }

    pub async fn check_purchase(&self, user_id: i64, order_id: i64, item_id: i64) -> Result<bool> {
        self.store.check_purchase(user_id, order_id, item_id).await
    }

    // ----- subscriptions -------------------------------------------------------------------

    pub async fn list_subscriptions(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> Result<Page<SubscriptionRecord>> {
        self.store.list_subscriptions(user_id, page).await
    }

    pub async fn subscription(
        &self,
        user_id: i64,
        subscription_id: i64,
    ) -> Result<SubscriptionRecord> {
        self.store
            .owned_subscription(user_id, subscription_id)
            .await
    }

    pub async fn update_subscription(
        &self,
        user_id: i64,
        subscription_id: i64,
        period_days: Option<i32>,
        quantity: Option<i32>,
    ) -> Result<SubscriptionRecord> {
        let change = SubscriptionChange::validate(period_days, quantity)?;
        self.store
            .update_subscription(user_id, subscription_id, change, self.clock.now())
            .await
    }

    pub async fn cancel_subscription(
        &self,
        user_id: i64,
        subscription_id: i64,
    ) -> Result<SubscriptionRecord> {
        self.store
            .cancel_subscription(user_id, subscription_id, self.clock.now())
            .await
    }
}

fn required(field: &str, value: &str) -> OrderError {
    OrderError::from(pillivery_platform::error::FieldViolation::new(
        field,
        serde_json::Value::from(value),
        pillivery_platform::error::Text::new("값이 올바르지 않습니다.", "is not valid"),
    ))
}
