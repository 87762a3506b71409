//! The sandbox's HTTP surface: KakaoPay's endpoints (secret key, faults, then the books), the
//! buyer page, and the unauthenticated `/sandbox/…` endpoints tests use to read the ledger and
//! SIDs and to change the faults.
//!
//! The books sit behind a `std::sync::Mutex` taken for one synchronous call per request and
//! released before any delay, so an injected latency or hold never blocks other calls.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use pillivery_platform::shutdown::Shutdown;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::books::{Books, BuyerChoice, CheckoutRefusal, LedgerFilter, SubscriptionFilter};
use crate::checkout;
use crate::config::{Endpoint, FaultConfig};
use crate::faults::{FaultOutcome, Faults};
use crate::kakao::KakaoError;

/// Everything a request handler needs.
pub(crate) struct App {
    pub(crate) books: Mutex<Books>,
    pub(crate) faults: Faults,
    secret_keys: Vec<String>,
    /// Fires when the server stops, so held calls answer at once and shutdown is not stuck
    /// behind a long injected hold.
    release: Shutdown,
}

impl App {
    pub(crate) fn new(books: Books, faults: Faults, secret_keys: Vec<String>) -> Self {
        Self {
            books: Mutex::new(books),
            faults,
            secret_keys,
            release: Shutdown::new(),
        }
    }

    /// A poisoned lock means a handler panicked mid-call; the books are still one consistent
    /// value per completed call, and a sandbox that stopped answering would hide the test's
    /// real failure.
    pub(crate) fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn release_holds(&self) {
        self.release.trigger();
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("SECRET_KEY "))
            .map(str::trim)
            .is_some_and(|key| self.secret_keys.iter().any(|known| known == key))
    }

    /// Waits `duration`, or less when the server is stopping.
    async fn pause(&self, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.release.wait() => {}
        }
    }
}

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(Endpoint::Ready.path(), post(ready))
        .route(Endpoint::Approve.path(), post(approve))
        .route(Endpoint::Subscription.path(), post(subscription))
        .route(Endpoint::Cancel.path(), post(cancel))
        .route(Endpoint::Inactive.path(), post(inactive))
        .route(Endpoint::Order.path(), post(order))
        .route("/checkout/{tid}", get(checkout_pc))
        .route("/checkout/{tid}/{channel}", get(checkout_channel))
        .route("/sandbox/ledger", get(ledger))
        .route("/sandbox/subscriptions", get(subscriptions))
        .route(
            "/sandbox/faults",
            get(faults_status).post(faults_install).delete(faults_reset),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app)
}

/// One KakaoPay call: secret key, injected faults, then `work` on the books.
async fn kakao_call<Request, Answer>(
    app: &App,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
    work: impl FnOnce(&mut Books, Request, bool, DateTime<Utc>) -> Result<Answer, KakaoError>,
) -> Response
where
    Request: DeserializeOwned,
    Answer: Serialize,
{
    if !app.authorized(headers) {
        tracing::info!(%endpoint, "refused: missing or unknown secret key");
        return KakaoError::unauthorized().into_response();
    }
    let decision = app.faults.decide(endpoint);
    app.pause(decision.latency).await;
    match decision.outcome {
        FaultOutcome::ServerError => {
            tracing::info!(%endpoint, "injected fault: 500");
            return KakaoError::injected_server_error().into_response();
        }
        FaultOutcome::Timeout => {
            tracing::info!(%endpoint, hold_ms = decision.hold.as_millis(), "injected fault: timeout");
            let _held = app.faults.hold();
            app.pause(decision.hold).await;
            return KakaoError::injected_timeout().into_response();
        }
        FaultOutcome::None | FaultOutcome::TimeoutAfterCommit | FaultOutcome::Decline => {}
    }
    let result = match serde_json::from_slice::<Request>(body) {
        Ok(request) => {
            let decline = decision.outcome == FaultOutcome::Decline;
            work(&mut app.books(), request, decline, Utc::now())
        }
        Err(error) => Err(KakaoError::invalid(format!(
            "invalid request body: {error}"
        ))),
    };
    if let Err(error) = &result {
        tracing::info!(
            %endpoint,
            error_code = error.body.error_code,
            reason = %error.body.extras.method_result_code,
            "refused"
        );
    }
    if decision.outcome == FaultOutcome::TimeoutAfterCommit {
        tracing::info!(%endpoint, hold_ms = decision.hold.as_millis(), "injected fault: timeout after commit");
        let _held = app.faults.hold();
        app.pause(decision.hold).await;
    }
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn ready(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    kakao_call(
        &app,
        Endpoint::Ready,
        &headers,
        &body,
        |books, request, _, now| books.ready(request, now),
    )
    .await
}

async fn approve(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    kakao_call(
        &app,
        Endpoint::Approve,
        &headers,
        &body,
        |books, request, _, now| books.approve(request, now),
    )
    .await
}

async fn subscription(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    kakao_call(
        &app,
        Endpoint::Subscription,
        &headers,
        &body,
        |books, request, decline, now| books.charge_subscription(request, decline, now),
    )
    .await
}

async fn cancel(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    kakao_call(
        &app,
        Endpoint::Cancel,
        &headers,
        &body,
        |books, request, _, now| books.cancel(request, now),
    )
    .await
}

async fn inactive(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    kakao_call(
        &app,
        Endpoint::Inactive,
        &headers,
        &body,
        |books, request, _, now| books.inactivate(request, now),
    )
    .await
}

async fn order(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    kakao_call(
        &app,
        Endpoint::Order,
        &headers,
        &body,
        |books, request, _, now| books.lookup(request, now),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
struct CheckoutQuery {
    auto: Option<String>,
}

async fn checkout_pc(
    State(app): State<Arc<App>>,
    Path(tid): Path<String>,
    Query(query): Query<CheckoutQuery>,
) -> Response {
    let (tid, auto_in_path) = checkout::split_auto(&tid);
    let auto = query.auto.as_deref().or(auto_in_path);
    checkout_page(&app, tid, &format!("/checkout/{tid}"), auto)
}

async fn checkout_channel(
    State(app): State<Arc<App>>,
    Path((tid, channel)): Path<(String, String)>,
    Query(query): Query<CheckoutQuery>,
) -> Response {
    let (channel, auto_in_path) = checkout::split_auto(&channel);
    if channel != "mobile" && channel != "app" {
        return (
            StatusCode::NOT_FOUND,
            Html(checkout::refusal("There is no such page.")),
        )
            .into_response();
    }
    let auto = query.auto.as_deref().or(auto_in_path);
    checkout_page(&app, &tid, &format!("/checkout/{tid}/{channel}"), auto)
}

fn checkout_page(app: &App, tid: &str, page_path: &str, auto: Option<&str>) -> Response {
    let now = Utc::now();
    let refused = |refusal: CheckoutRefusal| match refusal {
        CheckoutRefusal::NotFound => (
            StatusCode::NOT_FOUND,
            Html(checkout::refusal(
                "There is no payment with this transaction id.",
            )),
        )
            .into_response(),
        CheckoutRefusal::Finished(status, message) => (
            StatusCode::CONFLICT,
            Html(checkout::refusal(&format!(
                "{message} (status {}).",
                status.as_str()
            ))),
        )
            .into_response(),
    };
    let Some(auto) = auto else {
        return match app.books().checkout_view(tid, now) {
            Ok(view) => Html(checkout::page(&view, page_path)).into_response(),
            Err(refusal) => refused(refusal),
        };
    };
    let Some(choice) = checkout::parse_choice(auto) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(checkout::refusal("auto must be approve, cancel or fail.")),
        )
            .into_response();
    };
    let outcome = app.books().buyer_chooses(tid, choice, now);
    match outcome {
        Ok(location) => {
            tracing::info!(tid, choice = ?choice, "buyer chose");
            redirect(&location, choice)
        }
        Err(refusal) => refused(refusal),
    }
}

/// 302, as SPEC section 6 asks of the `auto` hook; the body names the target for a human.
fn redirect(location: &str, choice: BuyerChoice) -> Response {
    let mut response = (
        StatusCode::FOUND,
        Html(checkout::refusal(&format!(
            "Payment {}: continue to {location}",
            match choice {
                BuyerChoice::Approve => "approved",
                BuyerChoice::Cancel => "canceled",
                BuyerChoice::Fail => "failed",
            }
        ))),
    )
        .into_response();
    match header::HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        // Ready accepts printable ASCII URLs only, so this does not happen; should it, the
        // buyer sees why instead of a redirect without a target.
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(checkout::refusal(
                "The partner's return URL cannot be used as a redirect.",
            )),
        )
            .into_response(),
    }
}

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn ledger(
    State(app): State<Arc<App>>,
    filter: Result<Query<LedgerFilter>, QueryRejection>,
) -> Response {
    match filter {
        Ok(Query(filter)) => Json(app.books().ledger(&filter)).into_response(),
        Err(rejection) => admin_error(StatusCode::BAD_REQUEST, rejection.body_text()),
    }
}

async fn subscriptions(
    State(app): State<Arc<App>>,
    filter: Result<Query<SubscriptionFilter>, QueryRejection>,
) -> Response {
    match filter {
        Ok(Query(filter)) => {
            let subscriptions = app.books().subscriptions(&filter);
            Json(json!({ "subscriptions": subscriptions })).into_response()
        }
        Err(rejection) => admin_error(StatusCode::BAD_REQUEST, rejection.body_text()),
    }
}

async fn faults_status(State(app): State<Arc<App>>) -> Response {
    Json(app.faults.status()).into_response()
}

async fn faults_install(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let config: FaultConfig = match serde_json::from_slice(&body) {
        Ok(config) => config,
        Err(error) => {
            return admin_error(StatusCode::BAD_REQUEST, format!("invalid faults: {error}"));
        }
    };
    if let Err(reason) = config.validate() {
        return admin_error(StatusCode::BAD_REQUEST, reason);
    }
    tracing::info!(faults = ?config, "faults installed");
    app.faults.install(config);
    Json(app.faults.status()).into_response()
}

async fn faults_reset(State(app): State<Arc<App>>) -> Response {
    tracing::info!("faults reset");
    app.faults.install(FaultConfig::default());
    Json(app.faults.status()).into_response()
}
