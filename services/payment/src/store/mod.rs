//! The payment service's storage: its own database, which no other service reads.
//!
//! Every query is here. Each method is one short statement or one short transaction, and none
//! is ever held open across a call to the PG or another service (DESIGN: the original exhausted
//! its pool that way): the flows in `crate::payments` read, decide, call the PG outside any
//! transaction, then record the answer.
//!
//! Concurrency is settled by the database, never by a lock alone:
//! - a live READY attempt is unique per order (`ready_slot`), a charge per
//!   `(subscription_id, cycle)`, an idempotency key per user: a racing insert fails on the key
//!   and the loser reads the winner's row;
//! - an approval, refund or charge is owned through a lease column set by a conditional
//!   `UPDATE … WHERE lease is free`: exactly one caller sees one affected row.

mod entity;
mod error;
pub mod migration;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, Order, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    TransactionTrait,
};

use crate::domain::{ChargeIdentity, ChargeState, PaymentStatus, RecordedCharge};
use entity::{charge, payment, ready_key, subscription_key, subscription_link};

pub use error::StoreError;
pub use migration::Migrator;

/// Instants are stored to the microsecond, so what is read back equals what was written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Which contract an attempt was made under, as stored.
pub const CONTRACT_ONE_TIME: &str = "ONE_TIME";
pub const CONTRACT_SUBSCRIPTION: &str = "SUBSCRIPTION";

/// A payment attempt as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    pub payment_id: i64,
    pub order_id: i64,
    pub user_id: i64,
    pub subscription_contract: bool,
    pub partner_order_id: String,
    pub tid: String,
    pub status: PaymentStatus,
    pub amount: i64,
    pub item_name: String,
    pub quantity: i64,
    pub next_redirect_pc_url: String,
    pub next_redirect_mobile_url: String,
    pub next_redirect_app_url: String,
    pub pg_token: Option<String>,
    pub aid: Option<String>,
    pub sid: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub refund_maybe_sent: bool,
    pub refunded_amount: i64,
    pub order_confirmed: bool,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
}

impl TryFrom<payment::Model> for PaymentRecord {
    type Error = StoreError;

    fn try_from(row: payment::Model) -> Result<Self, StoreError> {
        let status = PaymentStatus::parse(&row.status).ok_or_else(|| StoreError::Corrupt {
            table: "payments",
            id: row.id,
            column: "status",
            value: row.status.clone(),
        })?;
        Ok(PaymentRecord {
            payment_id: row.id,
            order_id: row.order_id,
            user_id: row.user_id,
            subscription_contract: row.contract == CONTRACT_SUBSCRIPTION,
            partner_order_id: row.partner_order_id,
            tid: row.tid,
            status,
            amount: row.amount,
            item_name: row.item_name,
            quantity: row.quantity,
            next_redirect_pc_url: row.next_redirect_pc_url,
            next_redirect_mobile_url: row.next_redirect_mobile_url,
            next_redirect_app_url: row.next_redirect_app_url,
            pg_token: row.pg_token,
            aid: row.aid,
            sid: row.sid,
            lease_until_ms: row.lease_until_ms,
            refund_maybe_sent: row.refund_maybe_sent,
            refunded_amount: row.refunded_amount,
            order_confirmed: row.order_confirmed,
            failure_reason: row.failure_reason,
            created_at: row.created_at,
            approved_at: row.approved_at,
            canceled_at: row.canceled_at,
            refunded_at: row.refunded_at,
        })
    }
}

/// A new READY attempt: what the PG's ready answered plus what we asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPayment {
    pub order_id: i64,
    pub user_id: i64,
    pub subscription_contract: bool,
    pub partner_order_id: String,
    pub tid: String,
    pub amount: i64,
    pub item_name: String,
    pub quantity: i64,
    pub next_redirect_pc_url: String,
    pub next_redirect_mobile_url: String,
    pub next_redirect_app_url: String,
    pub created_at: DateTime<Utc>,
}

/// An idempotency key already used by this user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedKey {
    pub order_id: i64,
    pub payment_id: i64,
}

/// How storing a new READY attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertReady {
    Inserted(Box<PaymentRecord>),
    /// Another READY attempt for the order won the race; nothing was written.
    SlotTaken,
    /// The user's key was stored meanwhile (a concurrent repeat); nothing was written.
    KeyTaken(UsedKey),
}

/// What the PG approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovedPayment {
    pub aid: String,
    pub sid: Option<String>,
    pub approved_at: DateTime<Utc>,
}

/// A renewal charge as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRecord {
    pub charge_id: i64,
    pub identity: ChargeIdentity,
    pub partner_order_id: String,
    pub user_id: i64,
    pub origin_order_id: i64,
    pub amount: i64,
    pub item_name: String,
    pub quantity: i64,
    pub state: ChargeState,
    pub attempt: i32,
    pub maybe_sent: bool,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub tid: Option<String>,
    pub decline_code: Option<String>,
    pub decline_message: Option<String>,
    pub charged_at: Option<DateTime<Utc>>,
}

impl ChargeRecord {
    /// What the rules need to decide the next step, at `now_ms`.
    pub fn recorded(&self, now_ms: i64) -> RecordedCharge {
        RecordedCharge {
            state: self.state,
            attempt: self.attempt,
            maybe_sent: self.maybe_sent,
            leased: self.lease_until_ms.is_some_and(|until| until > now_ms),
        }
    }
}

impl TryFrom<charge::Model> for ChargeRecord {
    type Error = StoreError;

    fn try_from(row: charge::Model) -> Result<Self, StoreError> {
        let state = ChargeState::parse(&row.state).ok_or_else(|| StoreError::Corrupt {
            table: "charges",
            id: row.id,
            column: "state",
            value: row.state.clone(),
        })?;
        Ok(ChargeRecord {
            charge_id: row.id,
            identity: ChargeIdentity {
                subscription_id: row.subscription_id,
                cycle: row.cycle,
            },
            partner_order_id: row.partner_order_id,
            user_id: row.user_id,
            origin_order_id: row.origin_order_id,
            amount: row.amount,
            item_name: row.item_name,
            quantity: row.quantity,
            state,
            attempt: row.attempt,
            maybe_sent: row.maybe_sent,
            lease_owner: row.lease_owner,
            lease_until_ms: row.lease_until_ms,
            tid: row.tid,
            decline_code: row.decline_code,
            decline_message: row.decline_message,
            charged_at: row.charged_at,
        })
    }
}

/// A charge asked for the first time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCharge {
    pub identity: ChargeIdentity,
    pub user_id: i64,
    pub origin_order_id: i64,
    pub amount: i64,
    pub item_name: String,
    pub quantity: i64,
    pub attempt: i32,
}

/// How a sent charge ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeResult {
    Charged {
        tid: String,
        aid: String,
        charged_at: DateTime<Utc>,
    },
    Declined {
        code: String,
        message: String,
    },
}

/// Which order's PG key a subscription bills, and whether the subscription is still active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionLink {
    pub subscription_id: i64,
    pub origin_order_id: i64,
    pub active: bool,
}

/// The PG subscription key (SID) of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionKey {
    pub origin_order_id: i64,
    pub sid: String,
    pub user_id: i64,
    pub active: bool,
}

fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The condition "nobody holds the lease at `now_ms`".
fn lease_free<C: ColumnTrait>(column: C, now_ms: i64) -> Condition {
    Condition::any()
        .add(column.is_null())
        .add(column.lte(now_ms))
}

#[derive(Clone, Debug)]
pub struct PaymentStore {
    db: DatabaseConnection,
}

impl PaymentStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    // ---- payments -------------------------------------------------------------------------

    pub async fn payment(&self, payment_id: i64) -> Result<Option<PaymentRecord>, StoreError> {
        payment::Entity::find_by_id(payment_id)
            .one(&self.db)
            .await?
            .map(PaymentRecord::try_from)
            .transpose()
    }

    /// The order's attempts, newest first.
    pub async fn attempts(&self, order_id: i64) -> Result<Vec<PaymentRecord>, StoreError> {
        payment::Entity::find()
            .filter(payment::Column::OrderId.eq(order_id))
            .order_by(payment::Column::Id, Order::Desc)
            .all(&self.db)
            .await?
            .into_iter()
            .map(PaymentRecord::try_from)
            .collect()
    }

    /// The order's latest attempt.
    pub async fn latest_attempt(&self, order_id: i64) -> Result<Option<PaymentRecord>, StoreError> {
        payment::Entity::find()
            .filter(payment::Column::OrderId.eq(order_id))
            .order_by(payment::Column::Id, Order::Desc)
            .limit(1)
            .one(&self.db)
            .await?
            .map(PaymentRecord::try_from)
            .transpose()
    }

    /// The order's live READY attempt, if any.
    pub async fn live_ready(&self, order_id: i64) -> Result<Option<PaymentRecord>, StoreError> {
        payment::Entity::find()
            .filter(payment::Column::ReadySlot.eq(order_id))
            .one(&self.db)
            .await?
            .map(PaymentRecord::try_from)
            .transpose()
    }

    pub async fn used_key(&self, user_id: i64, key: &str) -> Result<Option<UsedKey>, StoreError> {
        Ok(ready_key::Entity::find_by_id((user_id, key.to_owned()))
            .one(&self.db)
            .await?
            .map(|row| UsedKey {
                order_id: row.order_id,
                payment_id: row.payment_id,
            }))
    }

    /// Stores `key` as answered by `payment_id`, or answers the use already stored.
    pub async fn remember_key(
        &self,
        user_id: i64,
        key: &str,
        order_id: i64,
        payment_id: i64,
    ) -> Result<Option<UsedKey>, StoreError> {
        let inserted = key_row(user_id, key, order_id, payment_id)
            .insert(&self.db)
            .await;
        match inserted {
            Ok(_) => Ok(None),
            Err(error) if is_unique_violation(&error) => self.used_key(user_id, key).await,
            Err(error) => Err(error.into()),
        }
    }

    /// Writes a new READY attempt and, with it, the key it answers: both or neither.
    pub async fn insert_ready(
        &self,
        new: &NewPayment,
        key: Option<&str>,
    ) -> Result<InsertReady, StoreError> {
        let txn = self.db.begin().await?;
        let row = payment::ActiveModel {
            id: NotSet,
            order_id: Set(new.order_id),
            user_id: Set(new.user_id),
            contract: Set(if new.subscription_contract {
                CONTRACT_SUBSCRIPTION
            } else {
                CONTRACT_ONE_TIME
            }
            .to_owned()),
            partner_order_id: Set(new.partner_order_id.clone()),
            tid: Set(new.tid.clone()),
            status: Set(PaymentStatus::Ready.as_str().to_owned()),
            amount: Set(new.amount),
            item_name: Set(new.item_name.clone()),
            quantity: Set(new.quantity),
            next_redirect_pc_url: Set(new.next_redirect_pc_url.clone()),
            next_redirect_mobile_url: Set(new.next_redirect_mobile_url.clone()),
            next_redirect_app_url: Set(new.next_redirect_app_url.clone()),
            ready_slot: Set(Some(new.order_id)),
            pg_token: Set(None),
            aid: Set(None),
            sid: Set(None),
            lease_until_ms: Set(None),
            refund_maybe_sent: Set(false),
            refunded_amount: Set(0),
            order_confirmed: Set(false),
            failure_reason: Set(None),
            created_at: Set(new.created_at),
            approved_at: Set(None),
            canceled_at: Set(None),
            refunded_at: Set(None),
            updated_at: Set(new.created_at),
        };
        let inserted = match row.insert(&txn).await {
            Ok(inserted) => inserted,
            Err(error) if is_unique_violation(&error) => return Ok(InsertReady::SlotTaken),
            Err(error) => return Err(error.into()),
        };
        if let Some(key) = key {
            match key_row(new.user_id, key, new.order_id, inserted.id)
                .insert(&txn)
                .await
            {
                Ok(_) => {}
                Err(error) if is_unique_violation(&error) => {
                    drop(txn);
                    return match self.used_key(new.user_id, key).await? {
                        Some(used) => Ok(InsertReady::KeyTaken(used)),
                        None => Err(StoreError::Database(error)),
                    };
                }
                Err(error) => return Err(error.into()),
            }
        }
        txn.commit().await?;
        Ok(InsertReady::Inserted(Box::new(PaymentRecord::try_from(
            inserted,
        )?)))
    }

    /// READY attempts the PG has expired become FAILED, freeing the order's ready slot.
    pub async fn expire_ready(&self, payment_ids: &[i64]) -> Result<(), StoreError> {
        if payment_ids.is_empty() {
            return Ok(());
        }
        payment::Entity::update_many()
            .col_expr(
                payment::Column::Status,
                Expr::value(PaymentStatus::Failed.as_str()),
            )
            .col_expr(payment::Column::ReadySlot, Expr::value(Option::<i64>::None))
            .col_expr(payment::Column::FailureReason, Expr::value("EXPIRED"))
            .col_expr(payment::Column::UpdatedAt, Expr::value(now()))
            .filter(payment::Column::Id.is_in(payment_ids.iter().copied()))
            .filter(payment::Column::Status.eq(PaymentStatus::Ready.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Takes the lease of an attempt in `status` for `lease_ms` (and records the pg_token an
    /// approval is sent with). False: another call holds it, or the status moved on.
    pub async fn claim_payment(
        &self,
        payment_id: i64,
        status: PaymentStatus,
        now_ms: i64,
        lease_ms: i64,
        pg_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut update = payment::Entity::update_many()
            .col_expr(
                payment::Column::LeaseUntilMs,
                Expr::value(now_ms + lease_ms),
            )
            .col_expr(payment::Column::UpdatedAt, Expr::value(now()));
        if let Some(pg_token) = pg_token {
            update = update.col_expr(payment::Column::PgToken, Expr::value(pg_token));
        }
        let result = update
            .filter(payment::Column::Id.eq(payment_id))
            .filter(payment::Column::Status.eq(status.as_str()))
            .filter(lease_free(payment::Column::LeaseUntilMs, now_ms))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    pub async fn release_payment(&self, payment_id: i64) -> Result<(), StoreError> {
        payment::Entity::update_many()
            .col_expr(
                payment::Column::LeaseUntilMs,
                Expr::value(Option::<i64>::None),
            )
            .filter(payment::Column::Id.eq(payment_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// READY → APPROVED, and the SID stored for the order (a subscription contract), in one
    /// transaction. A repeat (already APPROVED) changes nothing.
    pub async fn record_approved(
        &self,
        payment_id: i64,
        approved: &ApprovedPayment,
    ) -> Result<PaymentRecord, StoreError> {
        let txn = self.db.begin().await?;
        // The guarded write comes first, the read after it. On SQLite (WAL) a transaction that
        // reads first and writes second fails at once with SQLITE_BUSY (no busy wait) when
        // another connection wrote in between: under concurrent approvals that surfaced as
        // "database is locked", the gateway retried the approve, found the lease held and the
        // buyer got 409 PAYMENT_IN_PROGRESS for a payment the PG had approved. Writing first
        // takes the write lock (waiting up to busy_timeout) before the snapshot is pinned.
        let moved = payment::Entity::update_many()
            .col_expr(
                payment::Column::Status,
                Expr::value(PaymentStatus::Approved.as_str()),
            )
            .col_expr(payment::Column::ReadySlot, Expr::value(Option::<i64>::None))
            .col_expr(payment::Column::Aid, Expr::value(approved.aid.clone()))
            .col_expr(payment::Column::Sid, Expr::value(approved.sid.clone()))
            .col_expr(
                payment::Column::ApprovedAt,
                Expr::value(approved.approved_at),
            )
            .col_expr(
                payment::Column::LeaseUntilMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(payment::Column::UpdatedAt, Expr::value(now()))
            .filter(payment::Column::Id.eq(payment_id))
            .filter(payment::Column::Status.eq(PaymentStatus::Ready.as_str()))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        let current = payment::Entity::find_by_id(payment_id)
            .one(&txn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("payment {payment_id}")))?;
        if moved && let Some(sid) = &approved.sid {
            // One key per origin order; a second approval of the same order cannot exist
            // (the ready slot and the paid check), so a conflict is a repeat.
            let exists = subscription_key::Entity::find_by_id(current.order_id)
                .one(&txn)
                .await?
                .is_some();
            if !exists {
                subscription_key::ActiveModel {
                    origin_order_id: Set(current.order_id),
                    sid: Set(sid.clone()),
                    user_id: Set(current.user_id),
                    active: Set(true),
                    created_at: Set(approved.approved_at),
                    inactivated_at: Set(None),
                }
                .insert(&txn)
                .await?;
            }
        }
        txn.commit().await?;
        self.payment(payment_id).await?.ok_or_else(|| {
            StoreError::Database(DbErr::RecordNotFound(format!("payment {payment_id}")))
        })
    }

    /// READY → FAILED (amount mismatch, approval refused) with a reason.
    pub async fn record_failed(&self, payment_id: i64, reason: &str) -> Result<(), StoreError> {
        payment::Entity::update_many()
            .col_expr(
                payment::Column::Status,
                Expr::value(PaymentStatus::Failed.as_str()),
            )
            .col_expr(payment::Column::ReadySlot, Expr::value(Option::<i64>::None))
            .col_expr(payment::Column::FailureReason, Expr::value(reason))
            .col_expr(
                payment::Column::LeaseUntilMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(payment::Column::UpdatedAt, Expr::value(now()))
            .filter(payment::Column::Id.eq(payment_id))
            .filter(payment::Column::Status.eq(PaymentStatus::Ready.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// READY → CANCELED / FAILED by the buyer's redirect. False when it was no longer READY or
    /// an approval holds it.
    pub async fn record_abandoned(
        &self,
        payment_id: i64,
        status: PaymentStatus,
        at: DateTime<Utc>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut update = payment::Entity::update_many()
            .col_expr(payment::Column::Status, Expr::value(status.as_str()))
            .col_expr(payment::Column::ReadySlot, Expr::value(Option::<i64>::None))
            .col_expr(payment::Column::UpdatedAt, Expr::value(at));
        if status == PaymentStatus::Canceled {
            update = update.col_expr(payment::Column::CanceledAt, Expr::value(at));
        } else {
            update = update.col_expr(
                payment::Column::FailureReason,
                Expr::value("PG_FAIL_REDIRECT"),
            );
        }
        let result = update
            .filter(payment::Column::Id.eq(payment_id))
            .filter(payment::Column::Status.eq(PaymentStatus::Ready.as_str()))
            .filter(lease_free(payment::Column::LeaseUntilMs, now_ms))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// The order service has confirmed the attempt's current status (PAID or REFUNDED).
    pub async fn confirm_order(
        &self,
        payment_id: i64,
        status: PaymentStatus,
    ) -> Result<(), StoreError> {
        payment::Entity::update_many()
            .col_expr(payment::Column::OrderConfirmed, Expr::value(true))
            .filter(payment::Column::Id.eq(payment_id))
            .filter(payment::Column::Status.eq(status.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// APPROVED / REFUNDED attempts the order service has not confirmed, oldest first.
    pub async fn unconfirmed(&self, limit: u64) -> Result<Vec<PaymentRecord>, StoreError> {
        payment::Entity::find()
            .filter(payment::Column::OrderConfirmed.eq(false))
            .filter(payment::Column::Status.is_in([
                PaymentStatus::Approved.as_str(),
                PaymentStatus::Refunded.as_str(),
            ]))
            .order_by(payment::Column::Id, Order::Asc)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(PaymentRecord::try_from)
            .collect()
    }

    /// Before a refund is sent: from now on its outcome is unknown until the PG answers.
    pub async fn set_refund_maybe_sent(
        &self,
        payment_id: i64,
        maybe_sent: bool,
    ) -> Result<(), StoreError> {
        payment::Entity::update_many()
            .col_expr(payment::Column::RefundMaybeSent, Expr::value(maybe_sent))
            .filter(payment::Column::Id.eq(payment_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// APPROVED → REFUNDED; the order service is told again (`order_confirmed` resets).
    pub async fn record_refunded(
        &self,
        payment_id: i64,
        amount: i64,
        at: DateTime<Utc>,
    ) -> Result<PaymentRecord, StoreError> {
        payment::Entity::update_many()
            .col_expr(
                payment::Column::Status,
                Expr::value(PaymentStatus::Refunded.as_str()),
            )
            .col_expr(payment::Column::RefundedAmount, Expr::value(amount))
            .col_expr(payment::Column::RefundedAt, Expr::value(at))
            .col_expr(payment::Column::CanceledAt, Expr::value(at))
            .col_expr(payment::Column::OrderConfirmed, Expr::value(false))
            .col_expr(
                payment::Column::LeaseUntilMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(payment::Column::UpdatedAt, Expr::value(now()))
            .filter(payment::Column::Id.eq(payment_id))
            .filter(payment::Column::Status.eq(PaymentStatus::Approved.as_str()))
            .exec(&self.db)
            .await?;
        self.payment(payment_id).await?.ok_or_else(|| {
            StoreError::Database(DbErr::RecordNotFound(format!("payment {payment_id}")))
        })
    }

    // ---- charges --------------------------------------------------------------------------

    pub async fn charge(
        &self,
        identity: ChargeIdentity,
    ) -> Result<Option<ChargeRecord>, StoreError> {
        charge::Entity::find()
            .filter(charge::Column::SubscriptionId.eq(identity.subscription_id))
            .filter(charge::Column::Cycle.eq(identity.cycle))
            .one(&self.db)
            .await?
            .map(ChargeRecord::try_from)
            .transpose()
    }

    /// The charge of `new.identity`, created PENDING on the first call.
    pub async fn charge_or_insert(&self, new: &NewCharge) -> Result<ChargeRecord, StoreError> {
        if let Some(existing) = self.charge(new.identity).await? {
            return Ok(existing);
        }
        let at = now();
        let inserted = charge::ActiveModel {
            id: NotSet,
            subscription_id: Set(new.identity.subscription_id),
            cycle: Set(new.identity.cycle),
            partner_order_id: Set(new.identity.partner_order_id()),
            user_id: Set(new.user_id),
            origin_order_id: Set(new.origin_order_id),
            amount: Set(new.amount),
            item_name: Set(new.item_name.clone()),
            quantity: Set(new.quantity),
            state: Set(ChargeState::Pending.as_str().to_owned()),
            attempt: Set(new.attempt),
            maybe_sent: Set(false),
            lease_owner: Set(None),
            lease_until_ms: Set(None),
            tid: Set(None),
            aid: Set(None),
            decline_code: Set(None),
            decline_message: Set(None),
            charged_at: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(&self.db)
        .await;
        match inserted {
            Ok(row) => ChargeRecord::try_from(row),
            // A concurrent first call inserted it: that row is the charge.
            Err(error) if is_unique_violation(&error) => self
                .charge(new.identity)
                .await?
                .ok_or(StoreError::Database(error)),
            Err(error) => Err(error.into()),
        }
    }

    /// Takes the lease of a charge as read (`seen`): marks it maybe-sent and PENDING, raises
    /// its attempt. False when anything changed since it was read or the lease is held.
    pub async fn claim_charge(
        &self,
        seen: &ChargeRecord,
        owner: &str,
        attempt: i32,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = charge::Entity::update_many()
            .col_expr(charge::Column::LeaseOwner, Expr::value(owner))
            .col_expr(charge::Column::LeaseUntilMs, Expr::value(now_ms + lease_ms))
            .col_expr(charge::Column::MaybeSent, Expr::value(true))
            .col_expr(
                charge::Column::State,
                Expr::value(ChargeState::Pending.as_str()),
            )
            .col_expr(
                charge::Column::Attempt,
                Expr::value(attempt.max(seen.attempt)),
            )
            .col_expr(charge::Column::UpdatedAt, Expr::value(now()))
            .filter(charge::Column::Id.eq(seen.charge_id))
            .filter(charge::Column::State.eq(seen.state.as_str()))
            .filter(charge::Column::Attempt.eq(seen.attempt))
            .filter(lease_free(charge::Column::LeaseUntilMs, now_ms))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Records what the PG answered. A CHARGED row is never overwritten (a late decline of a
    /// stale caller cannot erase a charge).
    pub async fn finish_charge(
        &self,
        charge_id: i64,
        result: &ChargeResult,
    ) -> Result<ChargeRecord, StoreError> {
        let mut update = charge::Entity::update_many()
            .col_expr(
                charge::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                charge::Column::LeaseUntilMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(charge::Column::UpdatedAt, Expr::value(now()));
        update = match result {
            ChargeResult::Charged {
                tid,
                aid,
                charged_at,
            } => update
                .col_expr(
                    charge::Column::State,
                    Expr::value(ChargeState::Charged.as_str()),
                )
                .col_expr(charge::Column::Tid, Expr::value(tid.clone()))
                .col_expr(charge::Column::Aid, Expr::value(aid.clone()))
                .col_expr(charge::Column::ChargedAt, Expr::value(*charged_at))
                .col_expr(
                    charge::Column::DeclineCode,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    charge::Column::DeclineMessage,
                    Expr::value(Option::<String>::None),
                ),
            ChargeResult::Declined { code, message } => update
                .col_expr(
                    charge::Column::State,
                    Expr::value(ChargeState::Declined.as_str()),
                )
                .col_expr(charge::Column::DeclineCode, Expr::value(code.clone()))
                .col_expr(charge::Column::DeclineMessage, Expr::value(message.clone())),
        };
        update
            .filter(charge::Column::Id.eq(charge_id))
            .filter(charge::Column::State.ne(ChargeState::Charged.as_str()))
            .exec(&self.db)
            .await?;
        charge::Entity::find_by_id(charge_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("charge {charge_id}")))?
            .try_into()
    }

    /// Gives the lease back after a send that did not settle the charge. `maybe_sent` is what
    /// the row should say now: unchanged after a send that may have reached the PG, the value
    /// from before the claim after one that certainly did not.
    pub async fn release_charge(
        &self,
        charge_id: i64,
        owner: &str,
        maybe_sent: bool,
    ) -> Result<(), StoreError> {
        charge::Entity::update_many()
            .col_expr(
                charge::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                charge::Column::LeaseUntilMs,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(charge::Column::MaybeSent, Expr::value(maybe_sent))
            .col_expr(charge::Column::UpdatedAt, Expr::value(now()))
            .filter(charge::Column::Id.eq(charge_id))
            .filter(charge::Column::LeaseOwner.eq(owner))
            .filter(charge::Column::State.eq(ChargeState::Pending.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ---- subscription links and keys ------------------------------------------------------

    pub async fn link(&self, subscription_id: i64) -> Result<Option<SubscriptionLink>, StoreError> {
        Ok(subscription_link::Entity::find_by_id(subscription_id)
            .one(&self.db)
            .await?
            .map(|row| SubscriptionLink {
                subscription_id: row.subscription_id,
                origin_order_id: row.origin_order_id,
                active: row.active,
            }))
    }

    /// Records that `subscription_id` bills `origin_order_id`'s key (active), unless a link is
    /// already there (an inactive link stays inactive: a late "created" never revives it).
    pub async fn ensure_link(
        &self,
        subscription_id: i64,
        origin_order_id: i64,
    ) -> Result<SubscriptionLink, StoreError> {
        self.ensure_link_on(&self.db, subscription_id, origin_order_id)
            .await
    }

    /// [`ensure_link`](Self::ensure_link) on a given connection or transaction (an event
    /// handler's inbox transaction).
    pub async fn ensure_link_on<C: ConnectionTrait>(
        &self,
        connection: &C,
        subscription_id: i64,
        origin_order_id: i64,
    ) -> Result<SubscriptionLink, StoreError> {
        if let Some(link) = subscription_link::Entity::find_by_id(subscription_id)
            .one(connection)
            .await?
        {
            return Ok(SubscriptionLink {
                subscription_id,
                origin_order_id: link.origin_order_id,
                active: link.active,
            });
        }
        let inserted = subscription_link::ActiveModel {
            subscription_id: Set(subscription_id),
            origin_order_id: Set(origin_order_id),
            active: Set(true),
            updated_at: Set(now()),
        }
        .insert(connection)
        .await;
        match inserted {
            Ok(row) => Ok(SubscriptionLink {
                subscription_id,
                origin_order_id: row.origin_order_id,
                active: row.active,
            }),
            Err(error) if is_unique_violation(&error) => {
                let row = subscription_link::Entity::find_by_id(subscription_id)
                    .one(connection)
                    .await?
                    .ok_or(StoreError::Database(error))?;
                Ok(SubscriptionLink {
                    subscription_id,
                    origin_order_id: row.origin_order_id,
                    active: row.active,
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Marks the subscription inactive (creating its link inactive when none was recorded).
    pub async fn deactivate_link(
        &self,
        subscription_id: i64,
        origin_order_id: i64,
    ) -> Result<SubscriptionLink, StoreError> {
        let link = self.ensure_link(subscription_id, origin_order_id).await?;
        subscription_link::Entity::update_many()
            .col_expr(subscription_link::Column::Active, Expr::value(false))
            .col_expr(subscription_link::Column::UpdatedAt, Expr::value(now()))
            .filter(subscription_link::Column::SubscriptionId.eq(subscription_id))
            .exec(&self.db)
            .await?;
        Ok(SubscriptionLink {
            active: false,
            ..link
        })
    }

    /// How many active subscriptions bill `origin_order_id`'s key.
    pub async fn active_links(&self, origin_order_id: i64) -> Result<u64, StoreError> {
        Ok(subscription_link::Entity::find()
            .filter(subscription_link::Column::OriginOrderId.eq(origin_order_id))
            .filter(subscription_link::Column::Active.eq(true))
            .count(&self.db)
            .await?)
    }

    pub async fn key(&self, origin_order_id: i64) -> Result<Option<SubscriptionKey>, StoreError> {
        Ok(subscription_key::Entity::find_by_id(origin_order_id)
            .one(&self.db)
            .await?
            .map(|row| SubscriptionKey {
                origin_order_id: row.origin_order_id,
                sid: row.sid,
                user_id: row.user_id,
                active: row.active,
            }))
    }

    pub async fn deactivate_key(&self, origin_order_id: i64) -> Result<(), StoreError> {
        subscription_key::Entity::update_many()
            .col_expr(subscription_key::Column::Active, Expr::value(false))
            .col_expr(subscription_key::Column::InactivatedAt, Expr::value(now()))
            .filter(subscription_key::Column::OriginOrderId.eq(origin_order_id))
            .filter(subscription_key::Column::Active.eq(true))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

fn key_row(user_id: i64, key: &str, order_id: i64, payment_id: i64) -> ready_key::ActiveModel {
    ready_key::ActiveModel {
        user_id: Set(user_id),
        idempotency_key: Set(key.to_owned()),
        order_id: Set(order_id),
        payment_id: Set(payment_id),
        created_at: Set(now()),
    }
}
