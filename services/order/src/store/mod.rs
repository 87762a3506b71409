//! The order service's storage: carts, orders, subscriptions and this service's outbox, in its
//! own database (any replica serves any request: nothing lives in memory).
//!
//! Every query of the service is here. The same code runs on SQLite, PostgreSQL and
//! MySQL/MariaDB; how concurrent writers are kept correct is the same everywhere:
//!
//! - **Write first.** Every transaction starts with a write that both guards and locks: a cart
//!   write bumps the cart row's version (so writes to one cart queue on that row, and the
//!   50-line limit and quantity sums are checked against committed state), a status change is
//!   `UPDATE … WHERE status = <expected>` (only one of two racing transitions affects a row),
//!   a subscription change is `UPDATE … WHERE version = <read>` (optimistic, retried on a
//!   miss). Starting with a write also makes SQLite take its write lock at once, instead of
//!   failing a read-then-write upgrade.
//! - **Unique constraints** back every "exactly once": one idempotency row per (user, key), one
//!   renewal order per (subscription, cycle), one subscription per (order, item). A loser of a
//!   race fails on the constraint, rolls back, and reads the winner's result.
//! - **Events in the same transaction.** Each state change appends its events to the outbox
//!   ([`pillivery_platform::events::outbox::append`]) after its own writes, and the relay is
//!   woken after the commit.
//!
//! Transactions are short and never wait on another service: the catalog is asked before a
//! transaction begins.

mod entity;
mod error;
pub mod events;
pub mod migration;

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use pillivery_platform::error::{FieldViolation, Text};
use pillivery_platform::events::{NewEvent, RelayWaker, outbox};
use pillivery_platform::time::BusinessCalendar;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use crate::domain::cart::{StoredCartLine, merged_quantity};
use crate::domain::line::MAX_LINES;
use crate::domain::subscription::{CycleCheck, check_cycle};
use crate::domain::{
    BillingDates, CartKind, CartLineChange, InvalidTransition, NewCartLine, NewOrder, OrderStatus,
    OrderTransition, Page, PageRequest, Receiver, SubscriptionChange, SubscriptionStatus, Terms,
    Totals, UnitPrice,
};
use crate::error::OrderError;
use entity::{
    cart, cart_line, idempotency_key, order, order_line, order_status_history, subscription,
};

pub use error::StoreError;
pub use migration::Migrator;

/// The outbox stream of this service's events.
pub const STREAM: &str = "order";

/// How often an optimistic write is retried after losing a race before giving up (as 503).
const OPTIMISTIC_ATTEMPTS: usize = 5;

type Result<T> = std::result::Result<T, OrderError>;

/// A line of an order as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLineRecord {
    pub item_id: i64,
    pub product_name: String,
    pub thumbnail: String,
    pub quantity: i32,
    pub period_days: Option<i32>,
    pub price: UnitPrice,
    pub line_total: i64,
}

/// One entry of an order's status history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusChange {
    pub status: OrderStatus,
    pub at: DateTime<Utc>,
}

/// An order as stored, with its lines and history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    pub lines: Vec<OrderLineRecord>,
    pub totals: Totals,
    pub receiver: Receiver,
    /// Oldest first.
    pub history: Vec<StatusChange>,
    pub subscription_id: Option<i64>,
    pub cycle: Option<i32>,
    pub from_cart: bool,
    pub payment_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderRecord {
    pub fn has_subscription_lines(&self) -> bool {
        self.lines.iter().any(|line| line.period_days.is_some())
    }
}

/// A subscription as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub subscription_id: i64,
    pub user_id: i64,
    pub item_id: i64,
    pub product_name: String,
    pub quantity: i32,
    pub period_days: i32,
    /// Locked at order time.
    pub unit_price: UnitPrice,
    pub status: SubscriptionStatus,
    pub dates: BillingDates,
    /// The last cycle billed: 0 is the first payment.
    pub cycle: i32,
    pub failed_attempts: i32,
    pub origin_order_id: i64,
    /// Increases with every change (the events carry it).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SubscriptionRecord {
    fn terms(&self) -> Terms {
        Terms {
            period_days: self.period_days,
            quantity: self.quantity,
            dates: self.dates,
        }
    }

    /// What one renewal charges: quantity × locked real price.
    pub fn renewal_amount(&self) -> Option<i64> {
        i64::from(self.quantity).checked_mul(self.unit_price.real())
    }
}

/// The order service's tables behind one connection pool.
#[derive(Clone)]
pub struct OrderStore {
    db: DatabaseConnection,
    calendar: BusinessCalendar,
    relay: Option<RelayWaker>,
}

impl OrderStore {
    /// A store over an already migrated database (see [`Migrator`]). `calendar` turns payment
    /// instants into billing dates.
    pub fn new(db: DatabaseConnection, calendar: BusinessCalendar) -> OrderStore {
        OrderStore {
            db,
            calendar,
            relay: None,
        }
    }

    /// Wakes `relay` after each commit that appended events.
    pub fn with_relay(mut self, relay: RelayWaker) -> OrderStore {
        self.relay = Some(relay);
        self
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Wakes the relay: a transaction that appended events has committed.
    pub fn notify_events_committed(&self) {
        self.events_committed();
    }

    fn events_committed(&self) {
        if let Some(relay) = &self.relay {
            relay.wake();
        }
    }

    // ----- carts ---------------------------------------------------------------------------

    /// The lines of a cart, oldest first; empty when the cart was never used.
    pub async fn cart_lines(&self, user_id: i64, kind: CartKind) -> Result<Vec<StoredCartLine>> {
        let Some(cart_id) = cart_id(&self.db, user_id, kind).await? else {
            return Ok(Vec::new());
        };
        lines_of_cart(&self.db, cart_id).await
    }

    /// Adds a line, or adds its quantity to the line of the same item (the period of a
    /// subscription line becomes the one just given: the latest choice wins). More than 99 of
    /// one item is a violation of `quantity`; a 51st line is [`OrderError::CartFull`].
    pub async fn add_cart_line(
        &self,
        user_id: i64,
        line: NewCartLine,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = now.trunc_subsecs(6);
        let Some((transaction, cart_id)) = self.locked_cart(user_id, line.kind, now, true).await?
        else {
            return Err(contention("carts"));
        };
        let existing = cart_line::Entity::find_by_id((cart_id, line.item_id))
            .one(&transaction)
            .await?;
        match existing {
            Some(existing) => {
                let quantity = merged_quantity(existing.quantity, line.quantity)?;
                cart_line::Entity::update_many()
                    .col_expr(cart_line::Column::Quantity, Expr::value(quantity))
                    .col_expr(cart_line::Column::PeriodDays, Expr::value(line.period_days))
                    .col_expr(cart_line::Column::UpdatedAt, Expr::value(now))
                    .filter(cart_line::Column::CartId.eq(cart_id))
                    .filter(cart_line::Column::ItemId.eq(line.item_id))
                    .exec(&transaction)
                    .await?;
            }
            None => {
                let lines = cart_line::Entity::find()
                    .filter(cart_line::Column::CartId.eq(cart_id))
                    .count(&transaction)
                    .await?;
                if lines >= MAX_LINES as u64 {
                    return Err(OrderError::CartFull);
                }
                cart_line::Entity::insert(cart_line::ActiveModel {
                    cart_id: Set(cart_id),
                    item_id: Set(line.item_id),
                    quantity: Set(line.quantity),
                    period_days: Set(line.period_days),
                    created_at: Set(now),
                    updated_at: Set(now),
                })
                .exec_without_returning(&transaction)
                .await?;
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Changes the fields of `change` on the line of `item_id`; [`OrderError::CartLineNotFound`]
    /// when the cart has no such line.
    pub async fn update_cart_line(
        &self,
        user_id: i64,
        kind: CartKind,
        item_id: i64,
        change: CartLineChange,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = now.trunc_subsecs(6);
        let Some((transaction, cart_id)) = self.locked_cart(user_id, kind, now, false).await?
        else {
            return Err(OrderError::CartLineNotFound(item_id));
        };
        let existing = cart_line::Entity::find_by_id((cart_id, item_id))
            .one(&transaction)
            .await?
            .ok_or(OrderError::CartLineNotFound(item_id))?;
        // Existence was checked above: MySQL reports an UPDATE that changes nothing as
        // affecting no row, so the count cannot tell "missing" from "unchanged".
        cart_line::Entity::update_many()
            .col_expr(
                cart_line::Column::Quantity,
                Expr::value(change.quantity.unwrap_or(existing.quantity)),
            )
            .col_expr(
                cart_line::Column::PeriodDays,
                Expr::value(change.period_days.or(existing.period_days)),
            )
            .col_expr(cart_line::Column::UpdatedAt, Expr::value(now))
            .filter(cart_line::Column::CartId.eq(cart_id))
            .filter(cart_line::Column::ItemId.eq(item_id))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Removes the line of `item_id`; [`OrderError::CartLineNotFound`] when there is none.
    pub async fn remove_cart_line(&self, user_id: i64, kind: CartKind, item_id: i64) -> Result<()> {
        let Some(cart_id) = cart_id(&self.db, user_id, kind).await? else {
            return Err(OrderError::CartLineNotFound(item_id));
        };
        // One statement: atomic on its own.
        let deleted = cart_line::Entity::delete_many()
            .filter(cart_line::Column::CartId.eq(cart_id))
            .filter(cart_line::Column::ItemId.eq(item_id))
            .exec(&self.db)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(OrderError::CartLineNotFound(item_id));
        }
        Ok(())
    }

    /// A transaction holding the cart's row lock (taken by bumping its version), with the
    /// cart's id. With `create`, a missing cart is created first (its first use); without,
    /// a missing cart answers `None`.
    async fn locked_cart(
        &self,
        user_id: i64,
        kind: CartKind,
        now: DateTime<Utc>,
        create: bool,
    ) -> Result<Option<(sea_orm::DatabaseTransaction, i64)>> {
        for _ in 0..2 {
            let transaction = self.db.begin().await?;
            let locked = cart::Entity::update_many()
                .col_expr(
                    cart::Column::Version,
                    Expr::col(cart::Column::Version).add(1),
                )
                .col_expr(cart::Column::UpdatedAt, Expr::value(now))
                .filter(cart::Column::UserId.eq(user_id))
                .filter(cart::Column::Kind.eq(kind.as_str()))
                .exec(&transaction)
                .await?;
            if locked.rows_affected == 1 {
                let cart_id =
                    cart_id(&transaction, user_id, kind)
                        .await?
                        .ok_or(OrderError::Storage(StoreError::Database(
                            sea_orm::DbErr::RecordNotFound("carts".into()),
                        )))?;
                return Ok(Some((transaction, cart_id)));
            }
            drop(transaction);
            if !create {
                return Ok(None);
            }
            // The cart's first use. Outside the transaction: a concurrent first use may win
            // the unique (user, kind) and that is fine, the row exists either way.
            let inserted = cart::Entity::insert(cart::ActiveModel {
                id: NotSet,
                user_id: Set(user_id),
                kind: Set(kind.as_str().to_owned()),
                version: Set(1),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(&self.db)
            .await
            .map_err(StoreError::from);
            match inserted {
                Ok(_) => {}
                Err(error) if error.is_unique_violation() => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(contention("carts"))
    }

    // ----- checkout ------------------------------------------------------------------------

    /// The stored answer to `(user_id, key)`: `None` when the key is new, the first answer
    /// when `request_hash` matches, [`OrderError::IdempotencyKeyReused`] when it does not.
    pub async fn idempotent_answer(
        &self,
        user_id: i64,
        key: &str,
        request_hash: &str,
    ) -> Result<Option<Vec<u8>>> {
        let row = idempotency_key::Entity::find_by_id((user_id, key.to_owned()))
            .one(&self.db)
            .await?;
        match row {
            None => Ok(None),
            Some(row) if row.request_hash != request_hash => Err(OrderError::IdempotencyKeyReused),
            // Never committed without its answer (both are written in one transaction).
            Some(row) => row
                .response
                .map(Some)
                .ok_or(OrderError::IdempotencyKeyInFlight),
        }
    }

    /// Stores a new order in status REQUEST together with its idempotency key and first
    /// answer (`encode` of the stored order), all in one transaction, and returns that answer.
    ///
    /// The key is claimed first: a concurrent request with the same key waits on that row and,
    /// once this one commits, fails on the primary key, rolls back its own order, and answers
    /// this one's stored response (or 409 when its body differs).
    pub async fn create_order(
        &self,
        new_order: &NewOrder,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        encode: impl Fn(&OrderRecord) -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        let now = now.trunc_subsecs(6);
        let transaction = self.db.begin().await?;
        let claimed = idempotency_key::Entity::insert(idempotency_key::ActiveModel {
            user_id: Set(new_order.user_id),
            idempotency_key: Set(key.to_owned()),
            request_hash: Set(request_hash.to_owned()),
            order_id: Set(None),
            response: Set(None),
            created_at: Set(now),
        })
        .exec_without_returning(&transaction)
        .await
        .map_err(StoreError::from);
        match claimed {
            Ok(_) => {}
            Err(error) if error.is_unique_violation() => {
                drop(transaction);
                return self
                    .idempotent_answer(new_order.user_id, key, request_hash)
                    .await?
                    .ok_or(OrderError::IdempotencyKeyInFlight);
            }
            Err(error) => return Err(error.into()),
        }
        let record = insert_order(&transaction, new_order, OrderStatus::Request, None, now).await?;
        let response = encode(&record);
        idempotency_key::Entity::update_many()
            .col_expr(
                idempotency_key::Column::OrderId,
                Expr::value(record.order_id),
            )
            .col_expr(
                idempotency_key::Column::Response,
                Expr::value(response.clone()),
            )
            .filter(idempotency_key::Column::UserId.eq(new_order.user_id))
            .filter(idempotency_key::Column::IdempotencyKey.eq(key))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(response)
    }

    // ----- orders --------------------------------------------------------------------------

    pub async fn order(&self, order_id: i64) -> Result<Option<OrderRecord>> {
        let model = order::Entity::find_by_id(order_id).one(&self.db).await?;
        Ok(load_orders(&self.db, model.into_iter().collect())
            .await?
            .pop())
    }

    /// The order if `user_id` owns it; someone else's order is as missing as a deleted one.
    pub async fn owned_order(&self, user_id: i64, order_id: i64) -> Result<OrderRecord> {
        match self.order(order_id).await? {
            Some(order) if order.user_id == user_id => Ok(order),
            _ => Err(OrderError::OrderNotFound(order_id)),
        }
    }

    /// A page of `user_id`'s orders, newest first (`created_at` descending, then id
    /// descending), optionally only those in `status`.
    pub async fn list_orders(
        &self,
        user_id: i64,
        status: Option<OrderStatus>,
        page: PageRequest,
    ) -> Result<Page<OrderRecord>> {
        let mut query = order::Entity::find().filter(order::Column::UserId.eq(user_id));
        if let Some(status) = status {
            query = query.filter(order::Column::Status.eq(status.as_str()));
        }
        let total_elements = query.clone().count(&self.db).await?;
        let models = query
            .order_by_desc(order::Column::CreatedAt)
            .order_by_desc(order::Column::Id)
            .limit(page.limit())
            .offset(page.offset())
            .all(&self.db)
            .await?;
        Ok(Page {
            rows: load_orders(&self.db, models).await?,
            page,
            total_elements,
        })
    }

    /// The owner's cancel: an unpaid order is cancelled (OrderCanceled), a paid one becomes
    /// REFUND_PENDING (OrderRefundRequested; the payment service refunds it).
    pub async fn cancel_order(
        &self,
        user_id: i64,
        order_id: i64,
        now: DateTime<Utc>,
    ) -> Result<OrderRecord> {
        let order = self.owned_order(user_id, order_id).await?;
        let transition = order.status.owner_cancel()?;
        self.transition(order, transition, now, events::CANCELED_BY_USER)
            .await
    }

    /// REFUND_PENDING → REFUNDED; a repeat (already REFUNDED) answers the order.
    pub async fn mark_refunded(&self, order_id: i64, now: DateTime<Utc>) -> Result<OrderRecord> {
        let order = self
            .order(order_id)
            .await?
            .ok_or(OrderError::OrderNotFound(order_id))?;
        if order.status == OrderStatus::Refunded {
            return Ok(order);
        }
        self.transition(order, OrderTransition::CompleteRefund, now, "")
            .await
    }

    /// Applies a transition that needs nothing but the status change, its history entry and
    /// its event. The UPDATE is conditional on the status read: a concurrent transition that
    /// got there first leaves no row to update, and this one is refused as it would have been
    /// had it come second.
    async fn transition(
        &self,
        order: OrderRecord,
        transition: OrderTransition,
        now: DateTime<Utc>,
        cancel_reason: &str,
    ) -> Result<OrderRecord> {
        let now = now.trunc_subsecs(6);
        let to = order.status.after(transition)?;
        let transaction = self.db.begin().await?;
        let moved = order::Entity::update_many()
            .col_expr(order::Column::Status, Expr::value(to.as_str()))
            .col_expr(order::Column::UpdatedAt, Expr::value(now))
            .filter(order::Column::Id.eq(order.order_id))
            .filter(order::Column::Status.eq(order.status.as_str()))
            .exec(&transaction)
            .await?;
        if moved.rows_affected != 1 {
            drop(transaction);
            let current = self
                .order(order.order_id)
                .await?
                .ok_or(OrderError::OrderNotFound(order.order_id))?;
            return Err(InvalidTransition {
                from: current.status,
                transition,
            }
            .into());
        }
        insert_history(&transaction, order.order_id, to, now).await?;
        let mut changed = order;
        changed.status = to;
        changed.updated_at = now;
        changed.history.push(StatusChange {
            status: to,
            at: now,
        });
        let event = match transition {
            OrderTransition::Cancel => Some(events::order_canceled(&changed, cancel_reason)),
            OrderTransition::RequestRefund => Some(events::order_refund_requested(&changed)),
            OrderTransition::CompleteRefund => Some(events::order_refunded(&changed)),
            OrderTransition::Pay => None,
        };
        append(&transaction, event).await?;
        transaction.commit().await?;
        self.events_committed();
        Ok(changed)
    }

    /// REQUEST → PAID after the PG approved `amount` for `payment_id`, and in the same
    /// transaction: the status history, the cart cleanup of a `fromCart` order (exactly its
    /// items leave the cart each came from), one subscription per subscription line (price
    /// locked, dates anchored on the business date of `paid_at`), and the events OrderPaid and
    /// SubscriptionCreated.
    ///
    /// A repeat with the same `payment_id` answers the order as it is; an amount other than
    /// the total is [`OrderError::AmountMismatch`]; any other status is INVALID_ORDER_STATE.
    pub async fn mark_paid(
        &self,
        order_id: i64,
        payment_id: &str,
        amount: i64,
        paid_at: DateTime<Utc>,
    ) -> Result<OrderRecord> {
        let paid_at = paid_at.trunc_subsecs(6);
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let order = self
                .order(order_id)
                .await?
                .ok_or(OrderError::OrderNotFound(order_id))?;
            if order.status != OrderStatus::Request
                && order.payment_id.as_deref() == Some(payment_id)
            {
                return Ok(order);
            }
            order.status.after(OrderTransition::Pay)?;
            if amount != order.totals.price {
                return Err(OrderError::AmountMismatch {
                    expected: order.totals.price,
                    paid: amount,
                });
            }
            let transaction = self.db.begin().await?;
            let moved = order::Entity::update_many()
                .col_expr(
                    order::Column::Status,
                    Expr::value(OrderStatus::Paid.as_str()),
                )
                .col_expr(order::Column::PaymentId, Expr::value(payment_id))
                .col_expr(order::Column::PaidAt, Expr::value(paid_at))
                .col_expr(order::Column::UpdatedAt, Expr::value(paid_at))
                .filter(order::Column::Id.eq(order_id))
                .filter(order::Column::Status.eq(OrderStatus::Request.as_str()))
                .exec(&transaction)
                .await?;
            if moved.rows_affected != 1 {
                // Cancelled or paid meanwhile: read again and answer accordingly.
                continue;
            }
            insert_history(&transaction, order_id, OrderStatus::Paid, paid_at).await?;
            if order.from_cart {
                clean_carts(&transaction, &order).await?;
            }
            let paid_on = self.calendar.date_of(paid_at);
            let mut subscriptions = Vec::new();
            for line in order.lines.iter().filter(|line| line.period_days.is_some()) {
                subscriptions
                    .push(insert_subscription(&transaction, &order, line, paid_on, paid_at).await?);
            }
            let mut paid = order;
            paid.status = OrderStatus::Paid;
            paid.payment_id = Some(payment_id.to_owned());
            paid.paid_at = Some(paid_at);
            paid.updated_at = paid_at;
            paid.history.push(StatusChange {
                status: OrderStatus::Paid,
                at: paid_at,
            });
            let mut pending = vec![events::order_paid(&paid)];
            pending.extend(subscriptions.iter().map(events::subscription_created));
            append(&transaction, pending).await?;
            transaction.commit().await?;
            self.events_committed();
            return Ok(paid);
        }
        Err(contention("orders"))
    }

    /// Cancels, one by one, up to `limit` orders still in REQUEST that were created before
    /// `created_before`; answers how many. Each is the same guarded transition as the owner's
    /// cancel, so several replicas sweeping at once (or a payment landing at the same moment)
    /// cancel each order at most once and never a paid one.
    pub async fn cancel_unpaid(
        &self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<usize> {
        let ids: Vec<i64> = order::Entity::find()
            .select_only()
            .column(order::Column::Id)
            .filter(order::Column::Status.eq(OrderStatus::Request.as_str()))
            .filter(order::Column::CreatedAt.lt(created_before))
            .order_by_asc(order::Column::CreatedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut canceled = 0;
        for order_id in ids {
            let Some(order) = self.order(order_id).await? else {
                continue;
            };
            match self
                .transition(order, OrderTransition::Cancel, now, events::CANCELED_UNPAID)
                .await
            {
                Ok(_) => canceled += 1,
                // Paid or cancelled by someone else in the meantime: nothing to do.
                Err(OrderError::InvalidOrderState(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(canceled)
    }

    /// Whether `user_id` bought `item_id` in their PAID order `order_id`.
    pub async fn check_purchase(&self, user_id: i64, order_id: i64, item_id: i64) -> Result<bool> {
        let paid = order::Entity::find_by_id(order_id)
            .filter(order::Column::UserId.eq(user_id))
            .filter(order::Column::Status.eq(OrderStatus::Paid.as_str()))
            .count(&self.db)
            .await?;
        if paid == 0 {
            return Ok(false);
        }
        let lines = order_line::Entity::find()
            .filter(order_line::Column::OrderId.eq(order_id))
            .filter(order_line::Column::ItemId.eq(item_id))
            .count(&self.db)
            .await?;
        Ok(lines > 0)
    }

    // ----- subscriptions -------------------------------------------------------------------

    pub async fn subscription(&self, subscription_id: i64) -> Result<Option<SubscriptionRecord>> {
        subscription::Entity::find_by_id(subscription_id)
            .one(&self.db)
            .await?
            .map(subscription_record)
            .transpose()
    }

    /// The subscription if `user_id` owns it; someone else's is as missing as none.
    pub async fn owned_subscription(
        &self,
        user_id: i64,
        subscription_id: i64,
    ) -> Result<SubscriptionRecord> {
        match self.subscription(subscription_id).await? {
            Some(found) if found.user_id == user_id => Ok(found),
            _ => Err(OrderError::SubscriptionNotFound(subscription_id)),
        }
    }

    /// A page of `user_id`'s subscriptions, newest first.
    pub async fn list_subscriptions(
        &self,
        user_id: i64,
        page: PageRequest,
    ) -> Result<Page<SubscriptionRecord>> {
        let query = subscription::Entity::find().filter(subscription::Column::UserId.eq(user_id));
        let total_elements = query.clone().count(&self.db).await?;
        let rows = query
            .order_by_desc(subscription::Column::Id)
            .limit(page.limit())
            .offset(page.offset())
            .all(&self.db)
            .await?
            .into_iter()
            .map(subscription_record)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            rows,
            page,
            total_elements,
        })
    }

    /// The owner changes the period and/or quantity (SubscriptionChanged). A change that
    /// changes nothing writes nothing and emits nothing.
    pub async fn update_subscription(
        &self,
        user_id: i64,
        subscription_id: i64,
        change: SubscriptionChange,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionRecord> {
        let now = now.trunc_subsecs(6);
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let current = self.owned_subscription(user_id, subscription_id).await?;
            if !current.status.is_billable() {
                return Err(crate::domain::InvalidSubscriptionState(current.status).into());
            }
            let terms = current.terms().changed(change)?;
            if terms == current.terms() {
                return Ok(current);
            }
            let mut changed = current.clone();
            changed.quantity = terms.quantity;
            changed.period_days = terms.period_days;
            changed.dates = terms.dates;
            let Some(transaction) = self.write_subscription(&current, &mut changed, now).await?
            else {
                continue;
            };
            append(&transaction, Some(events::subscription_changed(&changed))).await?;
            transaction.commit().await?;
            self.events_committed();
            return Ok(changed);
        }
        Err(contention("subscriptions"))
    }

    /// ACTIVE/PAST_DUE → CANCELED by its owner (SubscriptionCanceled, reason `USER`); a second
    /// cancel is INVALID_SUBSCRIPTION_STATE.
    pub async fn cancel_subscription(
        &self,
        user_id: i64,
        subscription_id: i64,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionRecord> {
        let now = now.trunc_subsecs(6);
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let current = self.owned_subscription(user_id, subscription_id).await?;
            let mut changed = current.clone();
            changed.status = current.status.cancel()?;
            let Some(transaction) = self.write_subscription(&current, &mut changed, now).await?
            else {
                continue;
            };
            append(
                &transaction,
                Some(events::subscription_canceled(
                    &changed,
                    events::CANCELED_BY_USER,
                )),
            )
            .await?;
            transaction.commit().await?;
            self.events_committed();
            return Ok(changed);
        }
        Err(contention("subscriptions"))
    }

    /// Records the successful renewal charge of `cycle`, due on `billed_on`: a PAID renewal
    /// order (linked to the subscription, with its cycle), the dates advanced from `billed_on`,
    /// status ACTIVE, no failed attempts, and SubscriptionRenewed. Exactly once per cycle: a
    /// repeat answers the first result; a cycle that is not the next one is
    /// [`OrderError::CycleOutOfOrder`].
    pub async fn record_renewal(
        &self,
        subscription_id: i64,
        cycle: i32,
        billed_on: NaiveDate,
        amount: i64,
        charged_at: DateTime<Utc>,
    ) -> Result<(SubscriptionRecord, i64)> {
        let charged_at = charged_at.trunc_subsecs(6);
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let current = self
                .subscription(subscription_id)
                .await?
                .ok_or(OrderError::SubscriptionNotFound(subscription_id))?;
            match check_cycle(current.cycle, cycle) {
                CycleCheck::Next => {}
                CycleCheck::AlreadyRecorded => {
                    let renewal = renewal_order_id(&self.db, subscription_id, cycle).await?;
                    return match renewal {
                        Some(order_id) => Ok((current, order_id)),
                        None => Err(OrderError::CycleOutOfOrder {
                            current: current.cycle,
                            reported: cycle,
                        }),
                    };
                }
                CycleCheck::OutOfOrder => {
                    return Err(OrderError::CycleOutOfOrder {
                        current: current.cycle,
                        reported: cycle,
                    });
                }
            }
            let status = current.status.after_renewal()?;
            let expected = current
                .renewal_amount()
                .ok_or(OrderError::AmountOutOfRange)?;
            if amount != expected {
                return Err(OrderError::AmountMismatch {
                    expected,
                    paid: amount,
                });
            }
            if billed_on < current.dates.last_billed {
                return Err(FieldViolation::new(
                    "billedDate",
                    serde_json::Value::from(billed_on.to_string()),
                    Text::new(
                        "마지막 결제일보다 이전 날짜입니다.",
                        "is before the last billed date",
                    ),
                )
                .into());
            }
            let origin = self
                .order(current.origin_order_id)
                .await?
                .ok_or(OrderError::OrderNotFound(current.origin_order_id))?;
            let mut changed = current.clone();
            changed.status = status;
            changed.cycle = cycle;
            changed.failed_attempts = 0;
            changed.dates = current
                .dates
                .after_renewal(billed_on, current.period_days)?;
            let Some(transaction) = self
                .write_subscription(&current, &mut changed, charged_at)
                .await?
            else {
                continue;
            };
            let renewal = renewal_order(&current, &origin.receiver, cycle)?;
            let record = insert_order(
                &transaction,
                &renewal,
                OrderStatus::Paid,
                Some((subscription_id, cycle)),
                charged_at,
            )
            .await?;
            append(
                &transaction,
                Some(events::subscription_renewed(&changed, record.order_id)),
            )
            .await?;
            transaction.commit().await?;
            self.events_committed();
            return Ok((changed, record.order_id));
        }
        Err(contention("subscriptions"))
    }

    /// A failed renewal of `cycle`: PAST_DUE while retries remain, SUSPENDED when `last`
    /// (SubscriptionSuspended), else SubscriptionChanged. `attempt` (1-based, per cycle) makes
    /// a repeated report harmless: the failed-attempt count becomes at least `attempt`; 0
    /// counts one more. Refused for a CANCELED subscription and for a cycle that is not the
    /// one being billed.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_renewal_failure(
        &self,
        subscription_id: i64,
        cycle: i32,
        attempt: i32,
        last: bool,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionRecord> {
        let now = now.trunc_subsecs(6);
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let current = self
                .subscription(subscription_id)
                .await?
                .ok_or(OrderError::SubscriptionNotFound(subscription_id))?;
            let status = current.status.after_failed_renewal(last)?;
            if check_cycle(current.cycle, cycle) != CycleCheck::Next {
                return Err(OrderError::CycleOutOfOrder {
                    current: current.cycle,
                    reported: cycle,
                });
            }
            let failed_attempts = if attempt > 0 {
                Ord::max(current.failed_attempts, attempt)
            } else {
                current.failed_attempts.saturating_add(1)
            };
            if status == current.status && failed_attempts == current.failed_attempts {
                return Ok(current);
            }
            let mut changed = current.clone();
            changed.status = status;
            changed.failed_attempts = failed_attempts;
            let Some(transaction) = self.write_subscription(&current, &mut changed, now).await?
            else {
                continue;
            };
            let event = if status == SubscriptionStatus::Suspended
                && current.status != SubscriptionStatus::Suspended
            {
                events::subscription_suspended(&changed, reason)
            } else {
                events::subscription_changed(&changed)
            };
            append(&transaction, Some(event)).await?;
            transaction.commit().await?;
            self.events_committed();
            return Ok(changed);
        }
        Err(contention("subscriptions"))
    }

    /// Begins a transaction whose first statement writes `changed` over `current` if nobody
    /// changed the row since it was read (its version); `None` when somebody did (read again).
    /// Sets `changed`'s new version and update time.
    async fn write_subscription(
        &self,
        current: &SubscriptionRecord,
        changed: &mut SubscriptionRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<sea_orm::DatabaseTransaction>> {
        changed.version = current.version + 1;
        changed.updated_at = now;
        let transaction = self.db.begin().await?;
        let written = write_subscription_row(&transaction, current.version, changed).await?;
        Ok(written.then_some(transaction))
    }

    /// Cancels every ACTIVE or PAST_DUE subscription of `user_id` (the user withdrew), each with
    /// SubscriptionCanceled (reason `USER_WITHDRAWN`), through `conn`: the consumer's inbox
    /// transaction, so the effect and the processed event commit together. Answers how many.
    pub async fn cancel_user_subscriptions(
        conn: &impl ConnectionTrait,
        user_id: i64,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let now = now.trunc_subsecs(6);
        let billable = [
            SubscriptionStatus::Active.as_str(),
            SubscriptionStatus::PastDue.as_str(),
        ];
        let rows = subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(user_id))
            .filter(subscription::Column::Status.is_in(billable))
            .order_by_asc(subscription::Column::Id)
            .all(conn)
            .await?;
        let mut canceled = 0;
        for row in rows {
            let current = subscription_record(row)?;
            let mut changed = current.clone();
            changed.status = SubscriptionStatus::Canceled;
            changed.version = current.version + 1;
            changed.updated_at = now;
            if write_subscription_row(conn, current.version, &changed).await? {
                append(
                    conn,
                    Some(events::subscription_canceled(
                        &changed,
                        events::CANCELED_USER_WITHDRAWN,
                    )),
                )
                .await?;
                canceled += 1;
            }
        }
        Ok(canceled)
    }
}

/// The error after every optimistic attempt lost a race: a retryable 503.
fn contention(table: &str) -> OrderError {
    OrderError::Storage(StoreError::Database(sea_orm::DbErr::Conn(
        sea_orm::RuntimeErr::Internal(format!("{table}: too much contention, try again")),
    )))
}

async fn append<C: ConnectionTrait>(
    conn: &C,
    pending: impl IntoIterator<Item = NewEvent>,
) -> Result<()> {
    for event in pending {
        outbox::append(conn, STREAM, event).await?;
    }
    Ok(())
}

async fn cart_id<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    kind: CartKind,
) -> Result<Option<i64>> {
    Ok(cart::Entity::find()
        .select_only()
        .column(cart::Column::Id)
        .filter(cart::Column::UserId.eq(user_id))
        .filter(cart::Column::Kind.eq(kind.as_str()))
        .into_tuple()
        .one(conn)
        .await?)
}

async fn lines_of_cart<C: ConnectionTrait>(conn: &C, cart_id: i64) -> Result<Vec<StoredCartLine>> {
    Ok(cart_line::Entity::find()
        .filter(cart_line::Column::CartId.eq(cart_id))
        .order_by_asc(cart_line::Column::CreatedAt)
        .order_by_asc(cart_line::Column::ItemId)
        .all(conn)
        .await?
        .into_iter()
        .map(|line| StoredCartLine {
            item_id: line.item_id,
            quantity: line.quantity,
            period_days: line.period_days,
        })
        .collect())
}

/// Removes the items of a paid `fromCart` order from the carts they came from: normal lines
/// from the normal cart, subscription lines from the subscription cart; other lines stay.
async fn clean_carts<C: ConnectionTrait>(conn: &C, order: &OrderRecord) -> Result<()> {
    for kind in [CartKind::Normal, CartKind::Subscription] {
        let items: Vec<i64> = order
            .lines
            .iter()
            .filter(|line| CartKind::of_line(line.period_days) == kind)
            .map(|line| line.item_id)
            .collect();
        if items.is_empty() {
            continue;
        }
        let Some(cart_id) = cart_id(conn, order.user_id, kind).await? else {
            continue;
        };
        cart_line::Entity::delete_many()
            .filter(cart_line::Column::CartId.eq(cart_id))
            .filter(cart_line::Column::ItemId.is_in(items))
            .exec(conn)
            .await?;
    }
    Ok(())
}

async fn insert_history<C: ConnectionTrait>(
    conn: &C,
    order_id: i64,
    status: OrderStatus,
    at: DateTime<Utc>,
) -> Result<()> {
    order_status_history::Entity::insert(order_status_history::ActiveModel {
        id: NotSet,
        order_id: Set(order_id),
        status: Set(status.as_str().to_owned()),
        at: Set(at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Inserts an order with its lines and first history entry; answers it as stored.
async fn insert_order<C: ConnectionTrait>(
    conn: &C,
    new_order: &NewOrder,
    status: OrderStatus,
    renewal: Option<(i64, i32)>,
    now: DateTime<Utc>,
) -> Result<OrderRecord> {
    let paid_at = (status == OrderStatus::Paid).then_some(now);
    let order_id = order::Entity::insert(order::ActiveModel {
        id: NotSet,
        user_id: Set(new_order.user_id),
        status: Set(status.as_str().to_owned()),
        total_quantity: Set(new_order.totals.quantity),
        total_origin_price: Set(new_order.totals.origin),
        total_discount_price: Set(new_order.totals.discount),
        total_price: Set(new_order.totals.price),
        receiver_name: Set(new_order.receiver.name.clone()),
        receiver_phone: Set(new_order.receiver.phone.clone()),
        receiver_city: Set(new_order.receiver.city.clone()),
        receiver_detail_address: Set(new_order.receiver.detail_address.clone()),
        from_cart: Set(new_order.from_cart),
        subscription_id: Set(renewal.map(|(subscription_id, _)| subscription_id)),
        cycle: Set(renewal.map(|(_, cycle)| cycle)),
        payment_id: Set(None),
        paid_at: Set(paid_at),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(conn)
    .await?
    .last_insert_id;
    let lines: Vec<order_line::ActiveModel> = new_order
        .lines
        .iter()
        .enumerate()
        .map(|(line_no, line)| order_line::ActiveModel {
            order_id: Set(order_id),
            line_no: Set(line_no as i32),
            item_id: Set(line.item_id),
            product_name: Set(line.product_name.clone()),
            thumbnail: Set(line.thumbnail.clone()),
            quantity: Set(line.quantity),
            period_days: Set(line.period_days),
            origin_price: Set(line.price.origin()),
            discount_price: Set(line.price.discount()),
            real_price: Set(line.price.real()),
            line_total: Set(line.line_total),
        })
        .collect();
    order_line::Entity::insert_many(lines)
        .exec_without_returning(conn)
        .await?;
    insert_history(conn, order_id, status, now).await?;
    Ok(OrderRecord {
        order_id,
        user_id: new_order.user_id,
        status,
        lines: new_order
            .lines
            .iter()
            .map(|line| OrderLineRecord {
                item_id: line.item_id,
                product_name: line.product_name.clone(),
                thumbnail: line.thumbnail.clone(),
                quantity: line.quantity,
                period_days: line.period_days,
                price: line.price,
                line_total: line.line_total,
            })
            .collect(),
        totals: new_order.totals,
        receiver: new_order.receiver.clone(),
        history: vec![StatusChange { status, at: now }],
        subscription_id: renewal.map(|(subscription_id, _)| subscription_id),
        cycle: renewal.map(|(_, cycle)| cycle),
        from_cart: new_order.from_cart,
        payment_id: None,
        paid_at,
        created_at: now,
        updated_at: now,
    })
}

/// The order a renewal of `subscription` creates: one line, its quantity at the locked price,
/// delivered where the first order went.
fn renewal_order(
    subscription: &SubscriptionRecord,
    receiver: &Receiver,
    _cycle: i32,
) -> Result<NewOrder> {
    let line_total =
        crate::domain::money::line_amount(subscription.quantity, subscription.unit_price.real())?;
    let totals = Totals::of([(subscription.quantity, subscription.unit_price)])?;
    Ok(NewOrder {
        user_id: subscription.user_id,
        lines: vec![crate::domain::order::NewOrderLine {
            item_id: subscription.item_id,
            product_name: subscription.product_name.clone(),
            // The thumbnail of the first order's line is not kept on the subscription; the
            // catalog serves it by item id.
            thumbnail: String::new(),
            quantity: subscription.quantity,
            period_days: Some(subscription.period_days),
            price: subscription.unit_price,
            line_total,
        }],
        totals,
        receiver: receiver.clone(),
        from_cart: false,
    })
}

async fn renewal_order_id<C: ConnectionTrait>(
    conn: &C,
    subscription_id: i64,
    cycle: i32,
) -> Result<Option<i64>> {
    Ok(order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .filter(order::Column::SubscriptionId.eq(subscription_id))
        .filter(order::Column::Cycle.eq(cycle))
        .into_tuple()
        .one(conn)
        .await?)
}

async fn insert_subscription<C: ConnectionTrait>(
    conn: &C,
    order: &OrderRecord,
    line: &OrderLineRecord,
    paid_on: NaiveDate,
    now: DateTime<Utc>,
) -> Result<SubscriptionRecord> {
    let period_days = line.period_days.unwrap_or_default();
    let dates = BillingDates::first(paid_on, period_days)?;
    let model = subscription::ActiveModel {
        id: NotSet,
        user_id: Set(order.user_id),
        item_id: Set(line.item_id),
        product_name: Set(line.product_name.clone()),
        quantity: Set(line.quantity),
        period_days: Set(period_days),
        unit_origin_price: Set(line.price.origin()),
        unit_discount_price: Set(line.price.discount()),
        unit_price: Set(line.price.real()),
        status: Set(SubscriptionStatus::Active.as_str().to_owned()),
        anchor_date: Set(dates.anchor),
        last_billed_date: Set(dates.last_billed),
        next_billing_date: Set(dates.next_billing),
        cycle: Set(0),
        failed_attempts: Set(0),
        origin_order_id: Set(order.order_id),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let subscription_id = subscription::Entity::insert(model)
        .exec(conn)
        .await?
        .last_insert_id;
    Ok(SubscriptionRecord {
        subscription_id,
        user_id: order.user_id,
        item_id: line.item_id,
        product_name: line.product_name.clone(),
        quantity: line.quantity,
        period_days,
        unit_price: line.price,
        status: SubscriptionStatus::Active,
        dates,
        cycle: 0,
        failed_attempts: 0,
        origin_order_id: order.order_id,
        version: 1,
        created_at: now,
        updated_at: now,
    })
}

/// `UPDATE subscriptions SET <changed> WHERE id = … AND version = expected_version`; true when
/// the row was written.
async fn write_subscription_row<C: ConnectionTrait>(
    conn: &C,
    expected_version: i64,
    changed: &SubscriptionRecord,
) -> Result<bool> {
    let written = subscription::Entity::update_many()
        .col_expr(
            subscription::Column::Quantity,
            Expr::value(changed.quantity),
        )
        .col_expr(
            subscription::Column::PeriodDays,
            Expr::value(changed.period_days),
        )
        .col_expr(
            subscription::Column::Status,
            Expr::value(changed.status.as_str()),
        )
        .col_expr(
            subscription::Column::LastBilledDate,
            Expr::value(changed.dates.last_billed),
        )
        .col_expr(
            subscription::Column::NextBillingDate,
            Expr::value(changed.dates.next_billing),
        )
        .col_expr(subscription::Column::Cycle, Expr::value(changed.cycle))
        .col_expr(
            subscription::Column::FailedAttempts,
            Expr::value(changed.failed_attempts),
        )
        .col_expr(subscription::Column::Version, Expr::value(changed.version))
        .col_expr(
            subscription::Column::UpdatedAt,
            Expr::value(changed.updated_at),
        )
        .filter(subscription::Column::Id.eq(changed.subscription_id))
        .filter(subscription::Column::Version.eq(expected_version))
        .exec(conn)
        .await?;
    Ok(written.rows_affected == 1)
}

/// Orders with their lines and histories: three queries for any number of orders.
async fn load_orders<C: ConnectionTrait>(
    conn: &C,
    models: Vec<order::Model>,
) -> Result<Vec<OrderRecord>> {
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = models.iter().map(|model| model.id).collect();
    let mut lines: HashMap<i64, Vec<OrderLineRecord>> = HashMap::new();
    for line in order_line::Entity::find()
        .filter(order_line::Column::OrderId.is_in(ids.clone()))
        .order_by_asc(order_line::Column::OrderId)
        .order_by_asc(order_line::Column::LineNo)
        .all(conn)
        .await?
    {
        let price = UnitPrice::new(line.origin_price, line.discount_price).ok_or_else(|| {
            StoreError::Corrupt {
                table: "order_lines",
                id: line.order_id,
                column: "discount_price",
                value: line.discount_price.to_string(),
            }
        })?;
        lines
            .entry(line.order_id)
            .or_default()
            .push(OrderLineRecord {
                item_id: line.item_id,
                product_name: line.product_name,
                thumbnail: line.thumbnail,
                quantity: line.quantity,
                period_days: line.period_days,
                price,
                line_total: line.line_total,
            });
    }
    let mut history: HashMap<i64, Vec<StatusChange>> = HashMap::new();
    for change in order_status_history::Entity::find()
        .filter(order_status_history::Column::OrderId.is_in(ids))
        .order_by_asc(order_status_history::Column::Id)
        .all(conn)
        .await?
    {
        let status = parse_order_status(change.order_id, &change.status)?;
        history
            .entry(change.order_id)
            .or_default()
            .push(StatusChange {
                status,
                at: change.at,
            });
    }
    models
        .into_iter()
        .map(|model| {
            Ok(OrderRecord {
                order_id: model.id,
                user_id: model.user_id,
                status: parse_order_status(model.id, &model.status)?,
                lines: lines.remove(&model.id).unwrap_or_default(),
                totals: Totals {
                    quantity: model.total_quantity,
                    origin: model.total_origin_price,
                    discount: model.total_discount_price,
                    price: model.total_price,
                },
                receiver: Receiver {
                    name: model.receiver_name,
                    phone: model.receiver_phone,
                    city: model.receiver_city,
                    detail_address: model.receiver_detail_address,
                },
                history: history.remove(&model.id).unwrap_or_default(),
                subscription_id: model.subscription_id,
                cycle: model.cycle,
                from_cart: model.from_cart,
                payment_id: model.payment_id,
                paid_at: model.paid_at,
                created_at: model.created_at,
                updated_at: model.updated_at,
            })
        })
        .collect()
}

fn parse_order_status(order_id: i64, value: &str) -> Result<OrderStatus> {
    OrderStatus::parse(value).ok_or_else(|| {
        StoreError::Corrupt {
            table: "orders",
            id: order_id,
            column: "status",
            value: value.to_owned(),
        }
        .into()
    })
}

fn subscription_record(model: subscription::Model) -> Result<SubscriptionRecord> {
    let corrupt = |column: &'static str, value: String| StoreError::Corrupt {
        table: "subscriptions",
        id: model.id,
        column,
        value,
    };
    let status = SubscriptionStatus::parse(&model.status)
        .ok_or_else(|| corrupt("status", model.status.clone()))?;
    let unit_price = UnitPrice::new(model.unit_origin_price, model.unit_discount_price)
        .filter(|price| price.real() == model.unit_price)
        .ok_or_else(|| corrupt("unit_price", model.unit_price.to_string()))?;
    Ok(SubscriptionRecord {
        subscription_id: model.id,
        user_id: model.user_id,
        item_id: model.item_id,
        product_name: model.product_name,
        quantity: model.quantity,
        period_days: model.period_days,
        unit_price,
        status,
        dates: BillingDates {
            anchor: model.anchor_date,
            last_billed: model.last_billed_date,
            next_billing: model.next_billing_date,
        },
        cycle: model.cycle,
        failed_attempts: model.failed_attempts,
        origin_order_id: model.origin_order_id,
        version: model.version,
        created_at: model.created_at,
        updated_at: model.updated_at,
    })
}
