//! A fake OAuth2 provider for tests: token and user-info endpoints on 127.0.0.1:0, checking
//! what a real provider checks (client id and secret, redirect URI, PKCE S256), with profiles
//! the test registers per authorization code. Kakao- and Google-shaped profiles are the test's
//! to give (`kakao_profile`, `google_profile`).
//!
//! The browser step is the test's: it reads `state` and `code_challenge` from the authorize
//! location, calls [`FakeOAuthProvider::register`], then the callback with the code and state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A code the test registered: what the token endpoint accepts it with, and whose profile the
/// access token it yields reads.
struct Grant {
    challenge: String,
    profile: Value,
}

struct Fake {
    /// The gateway's `/api/auth/oauth2` base the redirect URIs are under.
    callback_base: String,
    /// (provider, code) → grant; a code is spent by its first exchange.
    codes: Mutex<HashMap<(String, String), Grant>>,
    /// access token → profile.
    tokens: Mutex<HashMap<String, Value>>,
    /// Every endpoint answers 500 while set.
    failing: AtomicBool,
}

/// The client id the fake expects from `provider`.
pub fn client_id(provider: &str) -> String {
    format!("{provider}-client")
}

/// The client secret the fake expects from `provider`.
pub fn client_secret(provider: &str) -> String {
    format!("{provider}-secret")
}

fn invalid_grant(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "error_description": description})),
    )
        .into_response()
}

async fn token(
    State(fake): State<Arc<Fake>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if fake.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return invalid_grant("not a form");
    }
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "authorization_code" {
        return invalid_grant("grant_type");
    }
    if field("client_id") != client_id(&provider)
        || field("client_secret") != client_secret(&provider)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    if field("redirect_uri") != format!("{}/{provider}/callback", fake.callback_base) {
        return invalid_grant("redirect_uri");
    }
    let Some(grant) = fake
        .codes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&(provider.clone(), field("code").to_owned()))
    else {
        return invalid_grant("unknown code");
    };
    if challenge_of(field("code_verifier")) != grant.challenge {
        return invalid_grant("PKCE verification failed");
    }
    let access_token = uuid::Uuid::new_v4().simple().to_string();
    fake.tokens
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(access_token.clone(), grant.profile);
    Json(json!({"access_token": access_token, "token_type": "bearer", "expires_in": 3600}))
        .into_response()
}

async fn userinfo(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    if fake.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let presented = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    match fake
        .tokens
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(presented)
    {
        Some(profile) => Json(profile.clone()).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token"})),
        )
            .into_response(),
    }
}

/// base64url(SHA-256(verifier)): the PKCE S256 challenge.
pub fn challenge_of(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// A running fake provider; stopped when dropped.
pub struct FakeOAuthProvider {
    fake: Arc<Fake>,
    base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOAuthProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOAuthProvider {
    /// Starts on a free loopback port. `callback_base` is the gateway's `/api/auth/oauth2`
    /// URL: the redirect URI of provider `p` must be `<callback_base>/p/callback`.
    pub async fn start(callback_base: &str) -> FakeOAuthProvider {
        let fake = Arc::new(Fake {
            callback_base: callback_base.trim_end_matches('/').to_owned(),
            codes: Mutex::default(),
            tokens: Mutex::default(),
            failing: AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/{provider}/token", post(token))
            .route("/{provider}/userinfo", get(userinfo))
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port for the fake provider");
        let address = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeOAuthProvider {
            fake,
            base_url: format!("http://{address}"),
            task,
        }
    }

    pub fn token_url(&self, provider: &str) -> String {
        format!("{}/{provider}/token", self.base_url)
    }

    pub fn userinfo_url(&self, provider: &str) -> String {
        format!("{}/{provider}/userinfo", self.base_url)
    }

    /// Never called by a test (the browser would go there), but a well-formed URL.
    pub fn authorize_url(&self, provider: &str) -> String {
        format!("{}/{provider}/authorize?prompt=login", self.base_url)
    }

    /// The redirect URI registered for `provider`.
    pub fn redirect_uri(&self, provider: &str) -> String {
        format!("{}/{provider}/callback", self.fake.callback_base)
    }

    /// The user consents: a code for `challenge` whose access token reads `profile`.
    pub fn register(&self, provider: &str, challenge: &str, profile: Value) -> String {
        let code = uuid::Uuid::new_v4().simple().to_string();
        self.fake
            .codes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                (provider.to_owned(), code.clone()),
                Grant {
                    challenge: challenge.to_owned(),
                    profile,
                },
            );
        code
    }

    /// While set, every endpoint answers 500.
    pub fn set_failing(&self, failing: bool) {
        self.fake.failing.store(failing, Ordering::SeqCst);
    }
}
