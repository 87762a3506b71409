//! Operator routes for dead letters, mounted on a service's admin port (never the public one:
//! whoever reaches the admin port is an operator, so there is no further authentication here).
//!
//! - `GET /admin/events/dead-letters?consumer=&include_replayed=&after_id=&limit=`: the dead
//!   letters, oldest first, as JSON (`payloadBase64`, since payloads are protobuf bytes).
//! - `POST /admin/events/dead-letters/{id}/replay`: replays one; 200 when applied (or already
//!   applied), 422 with the new reason when the handler failed again, 404 / 409 when there is
//!   no such dead letter / it was replayed already.
//! - `POST /admin/events/dead-letters/replay?limit=`: replays every waiting dead letter (up to
//!   `limit`, default 100), oldest first, and lists each outcome.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::dead_letters::{
    DeadLetter, DeadLetterQuery, DeadLetters, MAX_LIST_LIMIT, ReplayError, ReplayOutcome,
};

/// The dead-letter routes over `dead_letters` (see the module documentation); mount them with
/// `ServiceHost::with_admin_routes`.
pub fn admin_routes(dead_letters: DeadLetters) -> axum::Router {
    axum::Router::new()
        .route("/admin/events/dead-letters", get(list))
        .route("/admin/events/dead-letters/replay", post(replay_waiting))
        .route("/admin/events/dead-letters/{id}/replay", post(replay_one))
        .with_state(dead_letters)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListParams {
    consumer: Option<String>,
    include_replayed: bool,
    after_id: Option<i64>,
    limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReplayParams {
    limit: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetterView {
    id: i64,
    consumer: String,
    stream: String,
    event_id: String,
    event_type: String,
    aggregate_id: String,
    occurred_at: String,
    traceparent: Option<String>,
    payload_base64: String,
    reason: String,
    attempts: u32,
    failed_at: String,
    replayed_at: Option<String>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(letter: DeadLetter) -> Self {
        let instant = |at: chrono::DateTime<chrono::Utc>| {
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        DeadLetterView {
            id: letter.id,
            consumer: letter.consumer,
            stream: letter.stream,
            event_id: letter.event.event_id,
            event_type: letter.event.event_type,
            aggregate_id: letter.event.aggregate_id,
            occurred_at: instant(letter.event.occurred_at),
            traceparent: letter.event.traceparent,
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&letter.event.payload),
            reason: letter.reason,
            attempts: letter.attempts,
            failed_at: instant(letter.failed_at),
            replayed_at: letter.replayed_at.map(instant),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplayView {
    id: i64,
    /// `applied`, `already_applied`, `failed`, or an error: `not_found`, `already_replayed`,
    /// `no_handler`, `unavailable`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn replay_view(id: i64, result: Result<ReplayOutcome, ReplayError>) -> (StatusCode, ReplayView) {
    let view = |outcome, reason| ReplayView {
        id,
        outcome,
        reason,
    };
    match result {
        Ok(ReplayOutcome::Applied) => (StatusCode::OK, view("applied", None)),
        Ok(ReplayOutcome::AlreadyApplied) => (StatusCode::OK, view("already_applied", None)),
        Ok(ReplayOutcome::Failed { reason }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            view("failed", Some(reason)),
        ),
        Err(ReplayError::NotFound(_)) => (StatusCode::NOT_FOUND, view("not_found", None)),
        Err(ReplayError::AlreadyReplayed(_)) => {
            (StatusCode::CONFLICT, view("already_replayed", None))
        }
        Err(error @ ReplayError::NoHandler(_)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            view("no_handler", Some(error.to_string())),
        ),
        Err(ReplayError::Database(error)) => {
            tracing::error!(%error, dead_letter = id, "replay failed on the database");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                view("unavailable", Some("database unavailable".into())),
            )
        }
    }
}

fn unavailable(error: sea_orm::DbErr) -> Response {
    tracing::error!(%error, "dead letters unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": "database unavailable" })),
    )
        .into_response()
}

async fn list(
    State(dead_letters): State<DeadLetters>,
    Query(params): Query<ListParams>,
) -> Response {
    let query = DeadLetterQuery {
        consumer: params.consumer,
        include_replayed: params.include_replayed,
        after_id: params.after_id,
        limit: params.limit.unwrap_or(100).clamp(1, MAX_LIST_LIMIT),
    };
    match dead_letters.list(&query).await {
        Ok(letters) => {
            let next_after_id = (letters.len() as u64 == query.limit)
                .then(|| letters.last().map(|letter| letter.id))
                .flatten();
            let views: Vec<DeadLetterView> = letters.into_iter().map(Into::into).collect();
            Json(serde_json::json!({ "deadLetters": views, "nextAfterId": next_after_id }))
                .into_response()
        }
        Err(error) => unavailable(error),
    }
}

async fn replay_one(State(dead_letters): State<DeadLetters>, Path(id): Path<i64>) -> Response {
    let (status, view) = replay_view(id, dead_letters.replay(id).await);
    (status, Json(view)).into_response()
}

async fn replay_waiting(
    State(dead_letters): State<DeadLetters>,
    Query(params): Query<ReplayParams>,
) -> Response {
    match dead_letters
        .replay_waiting(params.limit.unwrap_or(100))
        .await
    {
        Ok(outcomes) => {
            let views: Vec<ReplayView> = outcomes
                .into_iter()
                .map(|(id, result)| replay_view(id, result).1)
                .collect();
            Json(serde_json::json!({ "replays": views })).into_response()
        }
        Err(error) => unavailable(error),
    }
}
