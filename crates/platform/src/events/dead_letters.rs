//! Dead letters: events a consumer gave up on, kept with the reason until someone replays them.
//!
//! A consumer writes a dead letter when its handler fails permanently, keeps failing after
//! `max_attempts`, panics, or when consumers keep dying on the entry; then it acknowledges the
//! entry, so one poison event does not stall its stream. While a dead letter waits (not yet
//! replayed), further deliveries of the same event are acknowledged without another attempt.
//!
//! [`replay`] runs the dead letter through the consumer's handler again, in the same way the
//! consumer does (inbox scope, inbox row), once the cause has been fixed. It re-handles the
//! event instead of republishing it to the stream: only the consumer that failed sees it again
//! (a republish would reach every group of the stream), and the operator gets the outcome in
//! the answer. A replay that succeeds (or finds the event already applied) sets `replayed_at`;
//! one that fails again updates the reason and stays waiting. [`DeadLetters`] bundles a
//! service's database with its consumers' handlers, for [`super::admin_routes`].

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::EventEnvelope;
use super::consumer::{Applied, EventHandler, HandlerError, Handling};
use super::entity::dead_letter;

/// The longest reason kept; handlers' error chains can be long, a dead letter needs the gist.
const MAX_REASON_CHARS: usize = 4_000;

/// One dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    /// The consumer (group) that gave up.
    pub consumer: String,
    pub stream: String,
    pub event: EventEnvelope,
    /// Why, from the last attempt.
    pub reason: String,
    /// Attempts made before giving up (0: dead-lettered for too many deliveries), plus replays.
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
    /// When a replay applied it; `None` while it waits.
    pub replayed_at: Option<DateTime<Utc>>,
}

impl From<dead_letter::Model> for DeadLetter {
    fn from(row: dead_letter::Model) -> Self {
        DeadLetter {
            id: row.id,
            consumer: row.consumer,
            stream: row.stream,
            event: EventEnvelope {
                event_id: row.event_id,
                event_type: row.event_type,
                aggregate_id: row.aggregate_id,
                occurred_at: row.occurred_at,
                traceparent: row.traceparent,
                payload: row.payload,
            },
            reason: row.reason,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            failed_at: row.failed_at,
            replayed_at: row.replayed_at,
        }
    }
}

/// Which dead letters [`list`] returns: by ascending id, after `after_id`, at most `limit`
/// (capped at 1 000).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterQuery {
    pub consumer: Option<String>,
    /// Include dead letters already replayed.
    pub include_replayed: bool,
    pub after_id: Option<i64>,
    pub limit: u64,
}

/// The most dead letters one [`list`] call returns.
pub const MAX_LIST_LIMIT: u64 = 1_000;

/// Dead letters matching `query`, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    query: &DeadLetterQuery,
) -> Result<Vec<DeadLetter>, DbErr> {
    let mut select = dead_letter::Entity::find().order_by_asc(dead_letter::Column::Id);
    if let Some(consumer) = &query.consumer {
        select = select.filter(dead_letter::Column::Consumer.eq(consumer.as_str()));
    }
    if !query.include_replayed {
        select = select.filter(dead_letter::Column::ReplayedAt.is_null());
    }
    if let Some(after_id) = query.after_id {
        select = select.filter(dead_letter::Column::Id.gt(after_id));
    }
    Ok(select
        .limit(query.limit.clamp(1, MAX_LIST_LIMIT))
        .all(db)
        .await?
        .into_iter()
        .map(DeadLetter::from)
        .collect())
}

/// Dead letters waiting for a replay.
pub async fn count_waiting(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    dead_letter::Entity::find()
        .filter(dead_letter::Column::ReplayedAt.is_null())
        .count(db)
        .await
}

/// How a replay ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The handler applied the event now.
    Applied,
    /// The consumer's inbox already had the event (applied by an earlier delivery or replay).
    AlreadyApplied,
    /// The handler failed again; the dead letter keeps waiting with this reason.
    Failed { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter {0}")]
    NotFound(i64),
    #[error("dead letter {0} was already replayed")]
    AlreadyReplayed(i64),
    #[error("no handler for consumer `{0}` in this service")]
    NoHandler(String),
    #[error("database: {0}")]
    Database(#[from] DbErr),
}

/// Runs dead letter `id` through `handler` (the handler of the dead letter's consumer) once.
pub async fn replay(
    db: &DatabaseConnection,
    id: i64,
    handler: Arc<dyn EventHandler>,
) -> Result<ReplayOutcome, ReplayError> {
    let row = dead_letter::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ReplayError::NotFound(id))?;
    if row.replayed_at.is_some() {
        return Err(ReplayError::AlreadyReplayed(id));
    }
    let letter = DeadLetter::from(row);
    let handling = Handling {
        db: db.clone(),
        consumer: letter.consumer.clone(),
        handler,
    };
    let span = tracing::info_span!(
        "events.replay",
        consumer = %letter.consumer,
        dead_letter = id,
        event_id = %letter.event.event_id,
        event_type = %letter.event.event_type,
        trace_id = tracing::field::Empty,
    );
    if let Some(traceparent) = &letter.event.traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.clone())]);
        crate::telemetry::continue_trace(&span, &carrier);
    }
    let outcome = {
        use tracing::Instrument;
        handling.attempt(&letter.event).instrument(span).await
    };
    let now = Utc::now().trunc_subsecs(6);
    match outcome {
        Ok(applied) => {
            dead_letter::Entity::update_many()
                .col_expr(dead_letter::Column::ReplayedAt, Expr::value(now))
                .filter(dead_letter::Column::Id.eq(id))
                .exec(db)
                .await?;
            metrics::counter!("pillivery_events_replayed_total", "consumer" => letter.consumer.clone())
                .increment(1);
            Ok(match applied {
                Applied::Now => ReplayOutcome::Applied,
                Applied::Before => ReplayOutcome::AlreadyApplied,
            })
        }
        Err(HandlerError::Permanent(reason) | HandlerError::Retryable(reason)) => {
            let reason = truncate(&format!("replay failed: {reason}"));
            dead_letter::Entity::update_many()
                .col_expr(dead_letter::Column::Reason, Expr::value(reason.clone()))
                .col_expr(
                    dead_letter::Column::Attempts,
                    Expr::col(dead_letter::Column::Attempts).add(1),
                )
                .col_expr(dead_letter::Column::FailedAt, Expr::value(now))
                .filter(dead_letter::Column::Id.eq(id))
                .exec(db)
                .await?;
            Ok(ReplayOutcome::Failed { reason })
        }
    }
}

/// Writes a dead letter.
pub(crate) async fn record(
    db: &DatabaseConnection,
    consumer: &str,
    stream: &str,
    event: &EventEnvelope,
    reason: &str,
    attempts: u32,
) -> Result<(), DbErr> {
    let row = dead_letter::ActiveModel {
        consumer: Set(consumer.to_owned()),
        stream: Set(stream.to_owned()),
        event_id: Set(event.event_id.clone()),
        event_type: Set(event.event_type.clone()),
        aggregate_id: Set(event.aggregate_id.clone()),
        payload: Set(event.payload.clone()),
        traceparent: Set(event.traceparent.clone()),
        occurred_at: Set(event.occurred_at),
        reason: Set(truncate(reason)),
        attempts: Set(i32::try_from(attempts).unwrap_or(i32::MAX)),
        failed_at: Set(Utc::now().trunc_subsecs(6)),
        replayed_at: Set(None),
        ..Default::default()
    };
    dead_letter::Entity::insert(row)
        .exec_without_returning(db)
        .await
        .map(drop)
}

/// Whether `consumer` has a dead letter for `event_id` waiting for a replay.
pub(crate) async fn is_waiting(
    db: &DatabaseConnection,
    consumer: &str,
    event_id: &str,
) -> Result<bool, DbErr> {
    Ok(dead_letter::Entity::find()
        .filter(dead_letter::Column::Consumer.eq(consumer))
        .filter(dead_letter::Column::EventId.eq(event_id))
        .filter(dead_letter::Column::ReplayedAt.is_null())
        .one(db)
        .await?
        .is_some())
}

fn truncate(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => format!("{}…", &reason[..end]),
        None => reason.to_owned(),
    }
}

/// A service's dead letters with the handlers that can replay them; cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    db: DatabaseConnection,
    handlers: HashMap<String, Arc<dyn EventHandler>>,
}

impl DeadLetters {
    /// The dead letters in `db`, with no handler yet (listing works, replays answer
    /// [`ReplayError::NoHandler`]).
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            handlers: HashMap::new(),
        }
    }

    /// Adds the handler of `consumer`, used to replay its dead letters.
    pub fn with_handler(mut self, consumer: &str, handler: Arc<dyn EventHandler>) -> Self {
        self.handlers.insert(consumer.to_owned(), handler);
        self
    }

    /// Joins another consumer's handlers (a service with several consumers).
    pub fn merge(mut self, other: DeadLetters) -> Self {
        self.handlers.extend(other.handlers);
        self
    }

    pub async fn list(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, DbErr> {
        list(&self.db, query).await
    }

    /// Replays dead letter `id` with its consumer's handler.
    pub async fn replay(&self, id: i64) -> Result<ReplayOutcome, ReplayError> {
        let consumer = dead_letter::Entity::find_by_id(id)
            .select_only()
            .column(dead_letter::Column::Consumer)
            .into_tuple::<String>()
            .one(&self.db)
            .await?
            .ok_or(ReplayError::NotFound(id))?;
        let handler = self
            .handlers
            .get(&consumer)
            .cloned()
            .ok_or(ReplayError::NoHandler(consumer))?;
        replay(&self.db, id, handler).await
    }

    /// Replays up to `limit` waiting dead letters of the consumers this service has handlers
    /// for, oldest first, one at a time (in the order they failed). Returns each id with its
    /// outcome.
    pub async fn replay_waiting(
        &self,
        limit: u64,
    ) -> Result<Vec<(i64, Result<ReplayOutcome, ReplayError>)>, DbErr> {
        let mut consumers: Vec<&String> = self.handlers.keys().collect();
        consumers.sort();
        let waiting = dead_letter::Entity::find()
            .select_only()
            .column(dead_letter::Column::Id)
            .filter(dead_letter::Column::ReplayedAt.is_null())
            .filter(dead_letter::Column::Consumer.is_in(consumers.into_iter().cloned()))
            .order_by_asc(dead_letter::Column::Id)
            .limit(limit.clamp(1, MAX_LIST_LIMIT))
            .into_tuple::<i64>()
            .all(&self.db)
            .await?;
        let mut outcomes = Vec::with_capacity(waiting.len());
        for id in waiting {
            outcomes.push((id, self.replay(id).await));
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let long = "가".repeat(MAX_REASON_CHARS + 10);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }
}
