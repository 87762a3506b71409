//! The scheduler's storage: billing jobs and their attempts, in its own database.
//!
//! Every query of the scheduler is here. The one that matters most is the **claim**
//! ([`SchedulerStore::claim`]): it hands each due job to exactly one claimant at a time by
//! writing a lease (`lease_owner`, `lease_until_ms`) onto the row.
//!
//! - PostgreSQL and MySQL: one short transaction selects due, unleased rows
//!   `FOR UPDATE SKIP LOCKED` (a concurrent claimant skips them instead of waiting) and writes
//!   the lease on exactly those rows.
//! - SQLite (the embedded fleet): one `UPDATE … WHERE subscription_id IN (SELECT … LIMIT n)`;
//!   SQLite runs one writer at a time, so the statement is the claim. The claimed rows are then
//!   read back by their lease token.
//!
//! Every lease token is unique (`<replica>#<claim number>`), and every write a claimant makes
//! afterwards is fenced by it (`WHERE lease_owner = token`): a replica whose lease lapsed while it
//! was stalled finds its write refused instead of overwriting the replica that took over. A
//! lapsed lease (a crashed replica) makes the row claimable again: `lease_until_ms < now`.
//!
//! No transaction here spans a call to another service (DESIGN: transactions are short).

mod entity;
pub mod migration;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    Order, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};

use crate::domain::{Job, JobStatus, StateDecision, SubscriptionState};
use entity::{billing_attempt, billing_job};

pub use migration::Migrator;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// A stored value no domain type accepts: the table was changed outside this service.
    #[error("job {subscription_id} has an invalid stored {column}: {value}")]
    Corrupt {
        subscription_id: i64,
        column: &'static str,
        value: String,
    },
}

impl StoreError {
    /// The database could not be reached or answered too slowly: worth a retry later (503).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(error) => pillivery_platform::db::is_unavailable(error),
            StoreError::Corrupt { .. } => false,
        }
    }
}

/// A job as stored, with its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub job: Job,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

/// How a charge attempt ended, as `billing_attempts` records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Charged,
    Declined,
    Fault,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Charged => "CHARGED",
            AttemptOutcome::Declined => "DECLINED",
            AttemptOutcome::Fault => "FAULT",
        }
    }
}

/// One row of `billing_attempts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub subscription_id: i64,
    pub cycle: i32,
    /// 1 for the first attempt at this cycle, counting every call (immediate retries too).
    pub attempt: i32,
    pub outcome: String,
    pub reason: String,
    pub as_of: NaiveDate,
    pub at: DateTime<Utc>,
}

/// What an event did to the jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Stale,
    /// The event was applied before (the inbox had it).
    AlreadyApplied,
}

/// Jobs due as of a date, for the lag and due metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueSummary {
    pub due: u64,
    pub oldest_due: Option<NaiveDate>,
}

/// The scheduler's tables behind one pool.
#[derive(Clone, Debug)]
pub struct SchedulerStore {
    db: DatabaseConnection,
}

/// The longest item name kept (the column is `VARCHAR(255)`).
const MAX_ITEM_NAME_CHARS: usize = 255;
/// The longest attempt reason kept (the column is `VARCHAR(500)`).
const MAX_REASON_CHARS: usize = 500;

impl SchedulerStore {
    pub fn new(db: DatabaseConnection) -> Self {
        SchedulerStore { db }
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub async fn get(&self, subscription_id: i64) -> Result<Option<JobRecord>, StoreError> {
        billing_job::Entity::find_by_id(subscription_id)
            .one(&self.db)
            .await?
            .map(record)
            .transpose()
    }

    /// Inserts `job`; when a job for the subscription exists, answers it unchanged (`false`).
    pub async fn create(
        &self,
        job: &Job,
        now: DateTime<Utc>,
    ) -> Result<(JobRecord, bool), StoreError> {
        let inserted = billing_job::Entity::insert(new_row(job, now))
            .exec_without_returning(&self.db)
            .await;
        let created = match inserted {
            Ok(_) => true,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                false
            }
            Err(error) => return Err(error.into()),
        };
        let stored = self.get(job.subscription_id).await?.ok_or_else(|| {
            StoreError::Database(DbErr::RecordNotFound(format!(
                "billing job {} after insert",
                job.subscription_id
            )))
        })?;
        Ok((stored, created))
    }

    /// Writes `job`'s schedule and ladder as the internal RPCs change them (reschedule,
    /// cancel); the lease is left alone, and a finished status is never left.
    pub async fn update_schedule(&self, job: &Job, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let finished = finished_statuses();
        let result = billing_job::Entity::update_many()
            .col_expr(
                billing_job::Column::NextBillingDate,
                Expr::val(job.next_billing_date),
            )
            .col_expr(billing_job::Column::PeriodDays, Expr::val(job.period_days))
            .col_expr(
                billing_job::Column::Status,
                Expr::case(
                    Expr::col(billing_job::Column::Status).is_in(finished.clone()),
                    Expr::col(billing_job::Column::Status),
                )
                .finally(job.status.as_str())
                .into(),
            )
            .col_expr(billing_job::Column::UpdatedAt, Expr::val(instant(now)))
            .filter(billing_job::Column::SubscriptionId.eq(job.subscription_id))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Applies a subscription event inside `transaction` (the consumer's inbox transaction):
    /// creates the job, updates it, or leaves it when the event is older than what it knows.
    pub async fn apply_state<C: ConnectionTrait>(
        transaction: &C,
        state: &SubscriptionState,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let mut query = billing_job::Entity::find_by_id(state.subscription_id);
        if transaction.get_database_backend() != DbBackend::Sqlite {
            // Two events about one subscription handled at once serialise here.
            query = query.lock_exclusive();
        }
        let Some(current) = query.one(transaction).await? else {
            let job = Job::from_state(state);
            let inserted = billing_job::Entity::insert(new_row(&job, now))
                .exec_without_returning(transaction)
                .await;
            return match inserted {
                Ok(_) => Ok(Applied::Created),
                // Created by CreateJob in between: the consumer retries, and finds the row.
                Err(error) => Err(error.into()),
            };
        };
        let current = record(current)?.job;
        match current.apply_state(state) {
            StateDecision::Stale => Ok(Applied::Stale),
            StateDecision::Write(job) => {
                let finished = finished_statuses();
                // The status and ladder go through CASE so that a finished status written
                // meanwhile is never left; every other column is the event's.
                billing_job::Entity::update_many()
                    .col_expr(billing_job::Column::UserId, Expr::val(job.user_id))
                    .col_expr(billing_job::Column::ItemId, Expr::val(job.item_id))
                    .col_expr(billing_job::Column::Quantity, Expr::val(job.quantity))
                    .col_expr(billing_job::Column::UnitPrice, Expr::val(job.unit_price))
                    .col_expr(billing_job::Column::PeriodDays, Expr::val(job.period_days))
                    .col_expr(
                        billing_job::Column::OriginOrderId,
                        Expr::val(job.origin_order_id),
                    )
                    .col_expr(
                        billing_job::Column::NextBillingDate,
                        Expr::val(job.next_billing_date),
                    )
                    .col_expr(
                        billing_job::Column::LastBilledDate,
                        Expr::val(job.last_billed_date),
                    )
                    .col_expr(billing_job::Column::Cycle, Expr::val(job.cycle))
                    .col_expr(
                        billing_job::Column::Status,
                        Expr::case(
                            Expr::col(billing_job::Column::Status).is_in(finished.clone()),
                            Expr::col(billing_job::Column::Status),
                        )
                        .finally(job.status.as_str())
                        .into(),
                    )
                    .col_expr(
                        billing_job::Column::FailedAttempts,
                        Expr::val(job.failed_attempts),
                    )
                    .col_expr(
                        billing_job::Column::NextAttemptDate,
                        Expr::val(job.next_attempt_date),
                    )
                    .col_expr(
                        billing_job::Column::StateVersion,
                        Expr::val(job.state_version),
                    )
                    .col_expr(billing_job::Column::UpdatedAt, Expr::val(instant(now)))
                    .filter(billing_job::Column::SubscriptionId.eq(job.subscription_id))
                    .exec(transaction)
                    .await?;
                Ok(Applied::Updated)
            }
        }
    }

    /// Claims up to `limit` jobs due as of `as_of` whose lease is free or lapsed at `now_ms`,
    /// leasing them to `token` until `lease_until_ms`; oldest due first. See the module
    /// documentation for how each backend makes this exclusive.
    pub async fn claim(
        &self,
        as_of: NaiveDate,
        token: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let due = due_condition(as_of, now_ms);
        match self.backend() {
            DbBackend::Sqlite => {
                let candidates = Query::select()
                    .column(billing_job::Column::SubscriptionId)
                    .from(billing_job::Entity)
                    .cond_where(due.clone())
                    .order_by(billing_job::Column::NextBillingDate, Order::Asc)
                    .order_by(billing_job::Column::SubscriptionId, Order::Asc)
                    .limit(limit)
                    .to_owned();
                let claimed = billing_job::Entity::update_many()
                    .col_expr(billing_job::Column::LeaseOwner, Expr::val(token))
                    .col_expr(billing_job::Column::LeaseUntilMs, Expr::val(lease_until_ms))
                    .filter(Expr::col(billing_job::Column::SubscriptionId).in_subquery(candidates))
                    .filter(due)
                    .exec(&self.db)
                    .await?;
                if claimed.rows_affected == 0 {
                    return Ok(Vec::new());
                }
                let rows = billing_job::Entity::find()
                    .filter(billing_job::Column::LeaseOwner.eq(token))
                    .order_by_asc(billing_job::Column::NextBillingDate)
                    .order_by_asc(billing_job::Column::SubscriptionId)
                    .all(&self.db)
                    .await?;
                rows.into_iter()
                    .map(|row| record(row).map(|r| r.job))
                    .collect()
            }
            _ => {
                let transaction = self.db.begin().await?;
                let rows = billing_job::Entity::find()
                    .filter(due)
                    .order_by_asc(billing_job::Column::NextBillingDate)
                    .order_by_asc(billing_job::Column::SubscriptionId)
                    .limit(limit)
                    .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                    .all(&transaction)
                    .await?;
                if rows.is_empty() {
                    transaction.commit().await?;
                    return Ok(Vec::new());
                }
                let ids: Vec<i64> = rows.iter().map(|row| row.subscription_id).collect();
                billing_job::Entity::update_many()
                    .col_expr(billing_job::Column::LeaseOwner, Expr::val(token))
                    .col_expr(billing_job::Column::LeaseUntilMs, Expr::val(lease_until_ms))
                    .filter(billing_job::Column::SubscriptionId.is_in(ids))
                    .exec(&transaction)
                    .await?;
                transaction.commit().await?;
                rows.into_iter()
                    .map(|row| record(row).map(|r| r.job))
                    .collect()
            }
        }
    }

    /// Writes what processing a claimed job decided, if `token` still holds its lease: the
    /// billing fields and the ladder, and either a new lease deadline (`Some`: more work on
    /// the job follows) or the lease released (`None`). False when the lease was lost.
    ///
    /// A finished status the row got meanwhile (a cancellation event while the job was being
    /// billed) is kept: `CASE` on the stored status, in the same statement.
    pub async fn save_claimed(
        &self,
        job: &Job,
        token: &str,
        lease_until_ms: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let finished = finished_statuses();
        let owner: Option<&str> = lease_until_ms.map(|_| token);
        let result = billing_job::Entity::update_many()
            .col_expr(billing_job::Column::ItemId, Expr::val(job.item_id))
            .col_expr(
                billing_job::Column::ItemName,
                Expr::val(truncate(&job.item_name, MAX_ITEM_NAME_CHARS)),
            )
            .col_expr(billing_job::Column::Quantity, Expr::val(job.quantity))
            .col_expr(billing_job::Column::UnitPrice, Expr::val(job.unit_price))
            .col_expr(billing_job::Column::PeriodDays, Expr::val(job.period_days))
            .col_expr(
                billing_job::Column::NextBillingDate,
                Expr::val(job.next_billing_date),
            )
            .col_expr(
                billing_job::Column::LastBilledDate,
                Expr::val(job.last_billed_date),
            )
            .col_expr(billing_job::Column::Cycle, Expr::val(job.cycle))
            .col_expr(
                billing_job::Column::Status,
                Expr::case(
                    Expr::col(billing_job::Column::Status).is_in(finished.clone()),
                    Expr::col(billing_job::Column::Status),
                )
                .finally(job.status.as_str())
                .into(),
            )
            .col_expr(
                billing_job::Column::FailedAttempts,
                Expr::val(job.failed_attempts),
            )
            .col_expr(
                billing_job::Column::NextAttemptDate,
                Expr::case(
                    Expr::col(billing_job::Column::Status).is_in(finished),
                    Expr::val(Option::<NaiveDate>::None),
                )
                .finally(Expr::val(job.next_attempt_date))
                .into(),
            )
            .col_expr(billing_job::Column::LeaseOwner, Expr::val(owner))
            .col_expr(billing_job::Column::LeaseUntilMs, Expr::val(lease_until_ms))
            .col_expr(billing_job::Column::UpdatedAt, Expr::val(instant(now)))
            .filter(billing_job::Column::SubscriptionId.eq(job.subscription_id))
            .filter(billing_job::Column::LeaseOwner.eq(token))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Records one charge attempt for operators.
    pub async fn record_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        let row = billing_attempt::ActiveModel {
            id: NotSet,
            subscription_id: Set(attempt.subscription_id),
            cycle: Set(attempt.cycle),
            attempt: Set(attempt.attempt),
            outcome: Set(attempt.outcome.clone()),
            reason: Set(truncate(&attempt.reason, MAX_REASON_CHARS)),
            as_of: Set(attempt.as_of),
            at: Set(instant(attempt.at)),
        };
        billing_attempt::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// The attempts of one subscription, oldest first.
    pub async fn attempts(&self, subscription_id: i64) -> Result<Vec<Attempt>, StoreError> {
        let rows = billing_attempt::Entity::find()
            .filter(billing_attempt::Column::SubscriptionId.eq(subscription_id))
            .order_by_asc(billing_attempt::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Attempt {
                subscription_id: row.subscription_id,
                cycle: row.cycle,
                attempt: row.attempt,
                outcome: row.outcome,
                reason: row.reason,
                as_of: row.as_of,
                at: row.at,
            })
            .collect())
    }

    /// How many jobs are due as of `as_of` (leased or not) and the oldest due date.
    pub async fn due_summary(&self, as_of: NaiveDate) -> Result<DueSummary, StoreError> {
        let condition = Condition::all()
            .add(
                billing_job::Column::Status
                    .is_in([JobStatus::Active.as_str(), JobStatus::PastDue.as_str()]),
            )
            .add(billing_job::Column::NextBillingDate.lte(as_of));
        let row: Option<(i64, Option<NaiveDate>)> = billing_job::Entity::find()
            .select_only()
            .column_as(billing_job::Column::SubscriptionId.count(), "due")
            .column_as(billing_job::Column::NextBillingDate.min(), "oldest")
            .filter(condition)
            .into_tuple()
            .one(&self.db)
            .await?;
        let (due, oldest_due) = row.unwrap_or((0, None));
        Ok(DueSummary {
            due: u64::try_from(due).unwrap_or(0),
            oldest_due,
        })
    }

    /// Every job, by subscription id (tests and small tools; not for a production table).
    pub async fn all_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        billing_job::Entity::find()
            .order_by_asc(billing_job::Column::SubscriptionId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(record)
            .collect()
    }
}

/// Due as of `as_of` and free to claim at `now_ms`; the SQL twin of [`Job::is_due`].
fn due_condition(as_of: NaiveDate, now_ms: i64) -> Condition {
    Condition::all()
        .add(
            billing_job::Column::Status
                .is_in([JobStatus::Active.as_str(), JobStatus::PastDue.as_str()]),
        )
        .add(billing_job::Column::NextBillingDate.lte(as_of))
        .add(
            Condition::any()
                .add(billing_job::Column::NextAttemptDate.is_null())
                .add(billing_job::Column::NextAttemptDate.lte(as_of)),
        )
        .add(
            Condition::any()
                .add(billing_job::Column::LeaseUntilMs.is_null())
                .add(billing_job::Column::LeaseUntilMs.lt(now_ms)),
        )
}

fn finished_statuses() -> Vec<&'static str> {
    vec![JobStatus::Suspended.as_str(), JobStatus::Canceled.as_str()]
}

/// Stored instants keep microseconds on every backend.
fn instant(now: DateTime<Utc>) -> DateTime<Utc> {
    now.trunc_subsecs(6)
}

fn truncate(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

fn new_row(job: &Job, now: DateTime<Utc>) -> billing_job::ActiveModel {
    billing_job::ActiveModel {
        subscription_id: Set(job.subscription_id),
        user_id: Set(job.user_id),
        item_id: Set(job.item_id),
        item_name: Set(truncate(&job.item_name, MAX_ITEM_NAME_CHARS)),
        quantity: Set(job.quantity),
        unit_price: Set(job.unit_price),
        period_days: Set(job.period_days),
        origin_order_id: Set(job.origin_order_id),
        status: Set(job.status.as_str().to_owned()),
        next_billing_date: Set(job.next_billing_date),
        last_billed_date: Set(job.last_billed_date),
        cycle: Set(job.cycle),
        failed_attempts: Set(job.failed_attempts),
        next_attempt_date: Set(job.next_attempt_date),
        state_version: Set(job.state_version),
        lease_owner: Set(None),
        lease_until_ms: Set(None),
        updated_at: Set(instant(now)),
    }
}

fn record(row: billing_job::Model) -> Result<JobRecord, StoreError> {
    let status = JobStatus::parse(&row.status).ok_or_else(|| StoreError::Corrupt {
        subscription_id: row.subscription_id,
        column: "status",
        value: row.status.clone(),
    })?;
    Ok(JobRecord {
        job: Job {
            subscription_id: row.subscription_id,
            user_id: row.user_id,
            item_id: row.item_id,
            item_name: row.item_name,
            quantity: row.quantity,
            unit_price: row.unit_price,
            period_days: row.period_days,
            origin_order_id: row.origin_order_id,
            status,
            next_billing_date: row.next_billing_date,
            last_billed_date: row.last_billed_date,
            cycle: row.cycle,
            failed_attempts: row.failed_attempts,
            next_attempt_date: row.next_attempt_date,
            state_version: row.state_version,
        },
        lease_owner: row.lease_owner,
        lease_until_ms: row.lease_until_ms,
        updated_at: row.updated_at,
    })
}
