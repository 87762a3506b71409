//! The transactional outbox: events are rows written in the producer's own transaction.
//!
//! A service calls [`append`] with the transaction that changes its state, after the change's
//! writes, and commits both together: the event exists exactly when the change does, and
//! nothing talks to the bus inside the transaction. Then it wakes its [`super::Relay`], which
//! publishes the row. The id (auto-increment) is the publish order; for events of one aggregate
//! it is also the order of the changes, because transactions that change one aggregate
//! serialize on its row (the later one waits for the earlier one's commit before its own
//! `append` takes an id). That is why `append` belongs after the state change's writes.
//!
//! The rest of this module is the relay's side of the table: reading unpublished rows in id
//! order, marking them published, republishing a window after the bus lost its data, and
//! pruning rows past the retention.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::outbox_event;
use super::{EventEnvelope, MAX_AGGREGATE_ID_CHARS, MAX_NAME_CHARS, NewEvent};

/// Writes `event` to the outbox of stream `stream` (by convention the producing service's
/// name, e.g. `order`) through `conn`, which should be the transaction of the state change.
///
/// Fills in a fresh UUID v7 event id, the current time (to the microsecond, the precision every
/// backend keeps) and the W3C `traceparent` of the current tracing span (none when tracing is
/// not set up). Returns the envelope as it will be delivered.
pub async fn append(
    conn: &impl ConnectionTrait,
    stream: &str,
    event: NewEvent,
) -> Result<EventEnvelope, DbErr> {
    check_length("stream", stream, MAX_NAME_CHARS)?;
    check_length("event_type", &event.event_type, MAX_NAME_CHARS)?;
    check_length("aggregate_id", &event.aggregate_id, MAX_AGGREGATE_ID_CHARS)?;
    let envelope = EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: event.event_type,
        aggregate_id: event.aggregate_id,
        occurred_at: Utc::now().trunc_subsecs(6),
        traceparent: current_traceparent(),
        payload: event.payload,
    };
    let row = outbox_event::ActiveModel {
        event_id: Set(envelope.event_id.clone()),
        stream: Set(stream.to_owned()),
        event_type: Set(envelope.event_type.clone()),
        aggregate_id: Set(envelope.aggregate_id.clone()),
        payload: Set(envelope.payload.clone()),
        traceparent: Set(envelope.traceparent.clone()),
        occurred_at: Set(envelope.occurred_at),
        published_at: Set(None),
        attempts: Set(0),
        ..Default::default()
    };
    outbox_event::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    metrics::counter!("pillivery_events_appended_total", "stream" => stream.to_owned())
        .increment(1);
    Ok(envelope)
}

fn check_length(what: &str, value: &str, max: usize) -> Result<(), DbErr> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(DbErr::Custom(format!(
            "event {what} must be 1 to {max} characters (got {chars})"
        )));
    }
    Ok(())
}

/// The `traceparent` of the current span, when tracing with OpenTelemetry is installed.
fn current_traceparent() -> Option<String> {
    let mut carrier = std::collections::HashMap::<String, String>::new();
    crate::telemetry::inject_trace(&tracing::Span::current(), &mut carrier);
    carrier
        .remove("traceparent")
        .filter(|value| !value.is_empty())
}

/// One outbox row on its way to the bus.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub id: i64,
    pub stream: String,
    pub envelope: EventEnvelope,
}

impl From<outbox_event::Model> for Pending {
    fn from(row: outbox_event::Model) -> Self {
        Pending {
            id: row.id,
            stream: row.stream,
            envelope: EventEnvelope {
                event_id: row.event_id,
                event_type: row.event_type,
                aggregate_id: row.aggregate_id,
                occurred_at: row.occurred_at,
                traceparent: row.traceparent,
                payload: row.payload,
            },
        }
    }
}

/// Up to `limit` unpublished rows, lowest id first.
pub(crate) async fn unpublished(
    conn: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<Pending>, DbErr> {
    Ok(outbox_event::Entity::find()
        .filter(outbox_event::Column::PublishedAt.is_null())
        .order_by_asc(outbox_event::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(Pending::from)
        .collect())
}

/// Marks rows published now and counts the publication.
pub(crate) async fn mark_published(conn: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    outbox_event::Entity::update_many()
        .col_expr(
            outbox_event::Column::PublishedAt,
            Expr::value(Utc::now().trunc_subsecs(6)),
        )
        .col_expr(
            outbox_event::Column::Attempts,
            Expr::col(outbox_event::Column::Attempts).add(1),
        )
        .filter(outbox_event::Column::Id.is_in(ids.iter().copied()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Makes every row of `stream` published at or after `since` unpublished again, so the relay
/// publishes it anew (the bus lost it). Returns how many rows.
pub(crate) async fn unpublish_since(
    conn: &impl ConnectionTrait,
    stream: &str,
    since: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = outbox_event::Entity::update_many()
        .col_expr(
            outbox_event::Column::PublishedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(outbox_event::Column::Stream.eq(stream))
        .filter(outbox_event::Column::PublishedAt.gte(since))
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// The streams this outbox has rows for.
pub(crate) async fn streams(conn: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    outbox_event::Entity::find()
        .select_only()
        .column(outbox_event::Column::Stream)
        .distinct()
        .into_tuple::<String>()
        .all(conn)
        .await
}

/// Deletes up to `limit` rows published before `before`; returns how many. Selecting the ids
/// first keeps it one portable statement each (MySQL cannot `LIMIT` inside `IN (SELECT …)`,
/// PostgreSQL has no `DELETE … LIMIT`).
pub(crate) async fn prune(
    conn: &impl ConnectionTrait,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DbErr> {
    let ids: Vec<i64> = outbox_event::Entity::find()
        .select_only()
        .column(outbox_event::Column::Id)
        .filter(outbox_event::Column::PublishedAt.lt(before))
        .order_by_asc(outbox_event::Column::Id)
        .limit(limit)
        .into_tuple::<i64>()
        .all(conn)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let result = outbox_event::Entity::delete_many()
        .filter(outbox_event::Column::Id.is_in(ids))
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// How many rows wait to be published, and when the oldest of them was written.
pub(crate) async fn backlog(
    conn: &impl ConnectionTrait,
) -> Result<(u64, Option<DateTime<Utc>>), DbErr> {
    let count = outbox_event::Entity::find()
        .filter(outbox_event::Column::PublishedAt.is_null())
        .count(conn)
        .await?;
    let oldest = if count == 0 {
        None
    } else {
        outbox_event::Entity::find()
            .filter(outbox_event::Column::PublishedAt.is_null())
            .order_by_asc(outbox_event::Column::Id)
            .one(conn)
            .await?
            .map(|row| row.occurred_at)
    };
    Ok((count, oldest))
}
