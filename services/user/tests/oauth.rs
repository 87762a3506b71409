//! OAuth2 login through the user service's gRPC API against a fake provider started by the
//! test (token and user-info endpoints on 127.0.0.1:0, Kakao- and Google-shaped).
//!
//! The test reads `state` and `code_challenge` from StartOAuth's `location`, registers a code
//! at the fake bound to that challenge and to a profile, then calls FinishOAuth with code and
//! state. The fake's token endpoint checks `client_id`, `client_secret`, `redirect_uri` and
//! that base64url(SHA-256(code_verifier)) is the challenge (else 400 `invalid_grant`), like a
//! real provider.
//!
//! Every scenario runs on SQLite, and on PostgreSQL / MySQL when `PILLIVERY_TEST_POSTGRES_URL` /
//! `PILLIVERY_TEST_MYSQL_URL` name a server; the key-value scenarios again with Redis when
//! `PILLIVERY_TEST_REDIS_URL` is set.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use common::Kv;
use pillivery_platform::error::{ApiError, DecodedError};
use pillivery_proto::user as pb;
use pillivery_proto::user::auth_service_client::AuthServiceClient;
use pillivery_proto::user::o_auth_service_client::OAuthServiceClient;
use pillivery_proto::user::user_service_client::UserServiceClient;
use pillivery_testkit::oauth::{FakeOAuthProvider, challenge_of, client_id, client_secret};
use pillivery_testkit::{Backend, TestDatabase};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use user::UserConfig;
use user::config::{OAuthConfig, OAuthProvider};

const CALLBACK: &str = "http://127.0.0.1:8080/api/auth/oauth2";

fn provider_config(fake: &FakeOAuthProvider, name: &str) -> OAuthProvider {
    let (id, secret, redirect) = (
        client_id(name),
        client_secret(name),
        fake.redirect_uri(name),
    );
    let preset = match name {
        "kakao" => OAuthProvider::kakao(id, secret, redirect),
        _ => OAuthProvider::google(id, secret, redirect),
    };
    OAuthProvider {
        authorize_url: fake.authorize_url(name),
        token_url: fake.token_url(name),
        userinfo_url: fake.userinfo_url(name),
        ..preset
    }
}

// ---------------------------------------------------------------------------------------------
// The harness

struct App {
    oauth: OAuthServiceClient<Channel>,
    users: UserServiceClient<Channel>,
    auth: AuthServiceClient<Channel>,
    fake: Arc<FakeOAuthProvider>,
}

async fn run<F, Fut>(backend: Option<Backend>, kv: common::Kv, test: F)
where
    F: FnOnce(App) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    let Some(kv) = kv.store().await else { return };
    let fake = Arc::new(FakeOAuthProvider::start(CALLBACK).await);
    let database = TestDatabase::fresh(&backend).await;
    let config = UserConfig {
        oauth: OAuthConfig {
            providers: ["kakao", "google"]
                .into_iter()
                .map(|name| (name.to_owned(), provider_config(&fake, name)))
                .collect(),
            http_timeout_ms: 2000,
            ..OAuthConfig::default()
        },
        ..common::test_config(&database)
    };
    pillivery_platform::config::ServiceConfig::validate(&config).unwrap();
    let running = common::start(config, kv).await;
    test(App {
        oauth: OAuthServiceClient::new(running.channel.clone()),
        users: UserServiceClient::new(running.channel.clone()),
        auth: AuthServiceClient::new(running.channel.clone()),
        fake,
    })
    .await;
    running.stop().await;
    database.remove().await;
}

mod memory {
    on_every_backend!(Memory:
        first_login_completes_the_profile_then_logs_in_directly,
        the_authorize_location_carries_state_and_pkce,
        state_is_single_use_and_bound_to_its_provider,
        a_pkce_mismatch_is_rejected,
        a_failing_provider_is_unavailable,
        a_refusal_at_the_provider_is_denied,
        an_existing_password_account_is_never_merged,
        google_needs_a_verified_email,
        a_ticket_is_single_use,
        completion_is_validated_and_can_be_corrected,
        unknown_providers_are_not_found,
        a_withdrawn_social_account_can_sign_up_again,
    );
}

/// The scenarios that keep state and tickets in the key-value store, again with Redis.
mod redis {
    on_every_backend!(Redis:
        first_login_completes_the_profile_then_logs_in_directly,
        state_is_single_use_and_bound_to_its_provider,
        a_ticket_is_single_use,
        completion_is_validated_and_can_be_corrected,
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn decoded(status: &Status) -> DecodedError {
    ApiError::from_status(status).unwrap_or_else(|| panic!("no error details: {status:?}"))
}

#[track_caller]
fn assert_error(status: Status, code: Code, reason: &str) -> DecodedError {
    let error = decoded(&status);
    assert_eq!(
        (error.code, error.reason.as_str()),
        (code, reason),
        "{status:?}"
    );
    error
}

fn kakao_profile(id: u64, email: &str) -> Value {
    json!({
        "id": id,
        "connected_at": "2025-01-01T00:00:00Z",
        "kakao_account": {"email": email, "is_email_valid": true, "is_email_verified": true}
    })
}

fn google_profile(sub: &str, email: &str, verified: bool) -> Value {
    json!({"sub": sub, "email": email, "email_verified": verified, "name": "홍길동"})
}

/// The authorize location's query.
fn query(location: &str) -> HashMap<String, String> {
    reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// StartOAuth: (state, code_challenge).
async fn start(app: &mut App, provider: &str) -> (String, String) {
    let location = app
        .oauth
        .start_o_auth(pb::StartOAuthRequest {
            provider: provider.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .location;
    let query = query(&location);
    (query["state"].clone(), query["code_challenge"].clone())
}

/// Registers a code at the fake for `challenge` and `profile`.
fn register(app: &App, provider: &str, challenge: &str, profile: Value) -> String {
    app.fake.register(provider, challenge, profile)
}

async fn finish(
    app: &mut App,
    provider: &str,
    code: &str,
    state: &str,
) -> Result<pb::OAuthResult, Status> {
    app.oauth
        .finish_o_auth(pb::FinishOAuthRequest {
            provider: provider.into(),
            code: code.into(),
            state: state.into(),
            // Google adds these; they are ignored.
            scope: "email openid".into(),
            authuser: "0".into(),
            prompt: "consent".into(),
            ..pb::FinishOAuthRequest::default()
        })
        .await
        .map(|response| response.into_inner())
}

/// A whole round trip at the provider: start, consent, callback.
async fn provider_login(
    app: &mut App,
    provider: &str,
    profile: Value,
) -> Result<pb::OAuthResult, Status> {
    let (state, challenge) = start(app, provider).await;
    let code = register(app, provider, &challenge, profile);
    finish(app, provider, &code, &state).await
}

fn complete_request(signup_token: &str, n: u32) -> pb::CompleteOAuthSignUpRequest {
    pb::CompleteOAuthSignUpRequest {
        signup_token: signup_token.into(),
        display_name: format!("소셜왕{n}"),
        phone: format!("0109876{n:04}"),
        city: "부산".into(),
        detail_address: "해운대구 1".into(),
    }
}

async fn complete(
    app: &mut App,
    request: pb::CompleteOAuthSignUpRequest,
) -> Result<pb::TokenPair, Status> {
    app.oauth
        .complete_o_auth_sign_up(request)
        .await
        .map(|response| response.into_inner())
}

async fn get_me(app: &mut App, access_token: &str) -> Result<pb::User, Status> {
    let mut request = Request::new(pb::GetMeRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {access_token}").parse().unwrap(),
    );
    app.users
        .get_me(request)
        .await
        .map(|response| response.into_inner())
}

#[track_caller]
fn assert_needs_profile(result: &pb::OAuthResult, email: &str) -> String {
    assert!(result.needs_profile, "{result:?}");
    assert_eq!(result.email.as_deref(), Some(email));
    assert!(result.access_token.is_none() && result.refresh_token.is_none());
    assert!(result.token_type.is_none() && result.expires_in.is_none());
    let token = result.signup_token.clone().unwrap();
    assert!(token.len() >= 43, "{token}");
    token
}

#[track_caller]
fn assert_logged_in(result: &pb::OAuthResult) -> String {
    assert!(!result.needs_profile, "{result:?}");
    assert!(result.signup_token.is_none() && result.email.is_none());
    assert_eq!(result.token_type.as_deref(), Some("Bearer"));
    assert!(result.expires_in.unwrap() > 0);
    assert!(!result.refresh_token.as_deref().unwrap().is_empty());
    result.access_token.clone().unwrap()
}

/// A first login completed: (signup token, token pair).
async fn sign_up_with(app: &mut App, provider: &str, profile: Value, n: u32) -> pb::TokenPair {
    let email = profile["kakao_account"]["email"]
        .as_str()
        .or(profile["email"].as_str())
        .unwrap()
        .to_lowercase();
    let result = provider_login(app, provider, profile).await.unwrap();
    let token = assert_needs_profile(&result, &email);
    complete(app, complete_request(&token, n)).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn first_login_completes_the_profile_then_logs_in_directly(mut app: App) {
    let result = provider_login(&mut app, "kakao", kakao_profile(1001, "Social@Kakao.com"))
        .await
        .unwrap();
    let token = assert_needs_profile(&result, "social@kakao.com");
    let pair = complete(&mut app, complete_request(&token, 1))
        .await
        .unwrap();
    assert_eq!(pair.token_type, "Bearer");
    assert!(pair.expires_in > 0 && !pair.refresh_token.is_empty());
    let me = get_me(&mut app, &pair.access_token).await.unwrap();
    assert!(me.social);
    assert_eq!(me.email, "social@kakao.com");
    assert_eq!(me.display_name, "소셜왕1");
    assert_eq!(me.phone, "010-9876-0001");
    assert_eq!((me.city.as_str(), me.real_name.as_str()), ("부산", ""));

    // The refresh token works like a password login's.
    app.auth
        .refresh(pb::RefreshRequest {
            refresh_token: pair.refresh_token.clone(),
        })
        .await
        .unwrap();

    // Returning: tokens at once, for the same account.
    let again = provider_login(&mut app, "kakao", kakao_profile(1001, "social@kakao.com"))
        .await
        .unwrap();
    let access = assert_logged_in(&again);
    assert_eq!(get_me(&mut app, &access).await.unwrap().user_id, me.user_id);
    // Even when the provider no longer shares the e-mail: the subject identifies.
    let again = provider_login(&mut app, "kakao", json!({"id": 1001}))
        .await
        .unwrap();
    assert_logged_in(&again);

    // No password: a password login for the account fails like any other.
    for password in ["", "secret12!"] {
        let status = app
            .auth
            .login(pb::LoginRequest {
                email: "social@kakao.com".into(),
                password: password.into(),
            })
            .await
            .unwrap_err();
        assert_error(status, Code::Unauthenticated, "BAD_CREDENTIALS");
    }
}

async fn the_authorize_location_carries_state_and_pkce(mut app: App) {
    let authorize = app.fake.authorize_url("google");
    let location = app
        .oauth
        .start_o_auth(pb::StartOAuthRequest {
            provider: "google".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .location;
    assert!(location.starts_with(&format!("{authorize}&")), "{location}");
    let query = query(&location);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "google-client");
    assert_eq!(query["redirect_uri"], app.fake.redirect_uri("google"));
    assert_eq!(query["scope"], "openid email profile");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert!(query["state"].len() >= 22, "at least 128 bits");
    assert!(!query.contains_key("client_secret"));
    // Every login gets its own state and challenge.
    let (state, challenge) = start(&mut app, "google").await;
    assert_ne!(state, query["state"]);
    assert_ne!(challenge, query["code_challenge"]);
}

async fn state_is_single_use_and_bound_to_its_provider(mut app: App) {
    let profile = kakao_profile(2001, "two@kakao.com");
    let (state, challenge) = start(&mut app, "kakao").await;
    let code = register(&app, "kakao", &challenge, profile.clone());
    finish(&mut app, "kakao", &code, &state).await.unwrap();
    // Replayed callback: the state is spent (with a fresh code too).
    let code = register(&app, "kakao", &challenge, profile.clone());
    let status = finish(&mut app, "kakao", &code, &state).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_STATE_INVALID");

    // Unknown and missing states.
    for state in ["made-up-state", ""] {
        let status = finish(&mut app, "kakao", &code, state).await.unwrap_err();
        assert_error(status, Code::Unauthenticated, "OAUTH_STATE_INVALID");
    }

    // A kakao login's state at google's callback, and then at kakao's: spent either way.
    let (state, challenge) = start(&mut app, "kakao").await;
    let code = register(
        &app,
        "google",
        &challenge,
        google_profile("g", "g@x.com", true),
    );
    let status = finish(&mut app, "google", &code, &state).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_STATE_INVALID");
    let code = register(&app, "kakao", &challenge, profile);
    let status = finish(&mut app, "kakao", &code, &state).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_STATE_INVALID");
}

async fn a_pkce_mismatch_is_rejected(mut app: App) {
    let (state, _) = start(&mut app, "kakao").await;
    let code = register(
        &app,
        "kakao",
        &challenge_of("some-other-verifier-of-an-attacker-0123456789"),
        kakao_profile(3001, "three@kakao.com"),
    );
    let status = finish(&mut app, "kakao", &code, &state).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_CODE_REJECTED");
    // An unknown code is refused the same way.
    let (state, _) = start(&mut app, "kakao").await;
    let status = finish(&mut app, "kakao", "no-such-code", &state)
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_CODE_REJECTED");
}

async fn a_failing_provider_is_unavailable(mut app: App) {
    app.fake.set_failing(true);
    let status = provider_login(&mut app, "kakao", kakao_profile(4001, "four@kakao.com"))
        .await
        .unwrap_err();
    assert_error(status, Code::Unavailable, "OAUTH_PROVIDER_UNAVAILABLE");
    // Healthy again: a new login works.
    app.fake.set_failing(false);
    provider_login(&mut app, "kakao", kakao_profile(4001, "four@kakao.com"))
        .await
        .unwrap();
}

async fn a_refusal_at_the_provider_is_denied(mut app: App) {
    let (state, _) = start(&mut app, "kakao").await;
    let status = app
        .oauth
        .finish_o_auth(pb::FinishOAuthRequest {
            provider: "kakao".into(),
            state: state.clone(),
            error: "access_denied".into(),
            error_description: "User denied access".into(),
            ..pb::FinishOAuthRequest::default()
        })
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_DENIED");
    // That login is over.
    let status = finish(&mut app, "kakao", "code", &state).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_STATE_INVALID");
}

async fn an_existing_password_account_is_never_merged(mut app: App) {
    app.users
        .sign_up(pb::SignUpRequest {
            email: "owner@example.com".into(),
            password: "secret12!".into(),
            display_name: "주인".into(),
            real_name: "김주인".into(),
            phone: "010-1111-2222".into(),
            city: "서울".into(),
            detail_address: "1".into(),
        })
        .await
        .unwrap();
    let mut request = Request::new(pb::FinishOAuthRequest::default());
    let (state, challenge) = start(&mut app, "kakao").await;
    let code = register(
        &app,
        "kakao",
        &challenge,
        kakao_profile(5001, "OWNER@example.com"),
    );
    *request.get_mut() = pb::FinishOAuthRequest {
        provider: "kakao".into(),
        code,
        state,
        ..pb::FinishOAuthRequest::default()
    };
    request
        .metadata_mut()
        .insert("accept-language", "en".parse().unwrap());
    let status = app.oauth.finish_o_auth(request).await.unwrap_err();
    let error = assert_error(status, Code::AlreadyExists, "EMAIL_REGISTERED");
    assert!(error.message.contains("password"), "{}", error.message);
    // Nothing was linked: the password account is untouched and still logs in.
    app.auth
        .login(pb::LoginRequest {
            email: "owner@example.com".into(),
            password: "secret12!".into(),
        })
        .await
        .unwrap();
    let status = provider_login(&mut app, "kakao", kakao_profile(5001, "owner@example.com"))
        .await
        .unwrap_err();
    assert_error(status, Code::AlreadyExists, "EMAIL_REGISTERED");
}

async fn google_needs_a_verified_email(mut app: App) {
    let status = provider_login(
        &mut app,
        "google",
        google_profile("g-1", "g@gmail.com", false),
    )
    .await
    .unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_EMAIL_UNVERIFIED");
    let status = provider_login(&mut app, "google", json!({"sub": "g-1"}))
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "OAUTH_EMAIL_REQUIRED");
    let pair = sign_up_with(
        &mut app,
        "google",
        google_profile("g-1", "G@gmail.com", true),
        7,
    )
    .await;
    let me = get_me(&mut app, &pair.access_token).await.unwrap();
    assert!(me.social);
    assert_eq!(me.email, "g@gmail.com");
    // Google's name passes the real-name rule here, so it is kept.
    assert_eq!(me.real_name, "홍길동");
    let again = provider_login(
        &mut app,
        "google",
        google_profile("g-1", "g@gmail.com", true),
    )
    .await
    .unwrap();
    assert_logged_in(&again);
    // Another provider's identity with the same e-mail is refused too, pointing at the
    // social login the account was made with rather than at a password it does not have.
    let (state, challenge) = start(&mut app, "kakao").await;
    let code = register(&app, "kakao", &challenge, kakao_profile(1, "g@gmail.com"));
    let mut request = Request::new(pb::FinishOAuthRequest {
        provider: "kakao".into(),
        code,
        state,
        ..pb::FinishOAuthRequest::default()
    });
    request
        .metadata_mut()
        .insert("accept-language", "en".parse().unwrap());
    let status = app.oauth.finish_o_auth(request).await.unwrap_err();
    let error = assert_error(status, Code::AlreadyExists, "EMAIL_REGISTERED");
    assert!(error.message.contains("social login"), "{}", error.message);
}

async fn a_ticket_is_single_use(mut app: App) {
    let result = provider_login(&mut app, "kakao", kakao_profile(6001, "six@kakao.com"))
        .await
        .unwrap();
    let token = assert_needs_profile(&result, "six@kakao.com");
    complete(&mut app, complete_request(&token, 6))
        .await
        .unwrap();
    let status = complete(&mut app, complete_request(&token, 60))
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "SIGNUP_TOKEN_INVALID");
    for token in ["", "not-a-ticket"] {
        let status = complete(&mut app, complete_request(token, 61))
            .await
            .unwrap_err();
        assert_error(status, Code::Unauthenticated, "SIGNUP_TOKEN_INVALID");
    }
}

async fn completion_is_validated_and_can_be_corrected(mut app: App) {
    // Someone already holds display name 소셜왕1 and phone …0001.
    sign_up_with(&mut app, "kakao", kakao_profile(7001, "first@kakao.com"), 1).await;
    let result = provider_login(&mut app, "kakao", kakao_profile(7002, "second@kakao.com"))
        .await
        .unwrap();
    let token = assert_needs_profile(&result, "second@kakao.com");

    let status = complete(
        &mut app,
        pb::CompleteOAuthSignUpRequest {
            signup_token: token.clone(),
            display_name: "a".into(),
            phone: "012-1234-5678".into(),
            city: " ".into(),
            detail_address: String::new(),
        },
    )
    .await
    .unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    let fields: Vec<&str> = error
        .field_errors
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(fields, ["displayName", "phone", "city", "detailAddress"]);

    let mut taken = complete_request(&token, 2);
    taken.display_name = "소셜왕1".into();
    let status = complete(&mut app, taken).await.unwrap_err();
    assert_error(status, Code::AlreadyExists, "DISPLAY_NAME_TAKEN");
    let mut taken = complete_request(&token, 2);
    taken.phone = "010-9876-0001".into();
    let status = complete(&mut app, taken).await.unwrap_err();
    assert_error(status, Code::AlreadyExists, "PHONE_TAKEN");

    // The ticket survived the mistakes.
    let pair = complete(&mut app, complete_request(&token, 2))
        .await
        .unwrap();
    let me = get_me(&mut app, &pair.access_token).await.unwrap();
    assert_eq!(me.email, "second@kakao.com");
}

async fn unknown_providers_are_not_found(mut app: App) {
    let status = app
        .oauth
        .start_o_auth(pb::StartOAuthRequest {
            provider: "naver".into(),
        })
        .await
        .unwrap_err();
    assert_error(status, Code::NotFound, "OAUTH_PROVIDER_NOT_FOUND");
    let (state, _) = start(&mut app, "kakao").await;
    let status = finish(&mut app, "naver", "code", &state).await.unwrap_err();
    assert_error(status, Code::NotFound, "OAUTH_PROVIDER_NOT_FOUND");
}

async fn a_withdrawn_social_account_can_sign_up_again(mut app: App) {
    let pair = sign_up_with(&mut app, "kakao", kakao_profile(8001, "eight@kakao.com"), 8).await;
    let first = get_me(&mut app, &pair.access_token).await.unwrap();
    let mut request = Request::new(pb::WithdrawRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", pair.access_token).parse().unwrap(),
    );
    app.users.withdraw(request).await.unwrap();
    // The identity was unlinked with the withdrawal: a new sign-up, not the old account.
    let pair = sign_up_with(&mut app, "kakao", kakao_profile(8001, "eight@kakao.com"), 8).await;
    let second = get_me(&mut app, &pair.access_token).await.unwrap();
    assert_ne!(first.user_id, second.user_id);
}
