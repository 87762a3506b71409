//! The user service through its gRPC API, on a random port with a fresh database.
//!
//! Every scenario runs on SQLite, and on PostgreSQL / MySQL when `PILLIVERY_TEST_POSTGRES_URL` /
//! `PILLIVERY_TEST_MYSQL_URL` name a server. The token scenarios also run with a Redis
//! key-value store (a unique key prefix per test) when `PILLIVERY_TEST_REDIS_URL` is set.

#[macro_use]
mod common;

use std::future::Future;

use common::Kv;
use pillivery_platform::error::{ApiError, DecodedError};
use pillivery_platform::kv::KeyValueStore;
use pillivery_proto::user as pb;
use pillivery_proto::user::auth_service_client::AuthServiceClient;
use pillivery_proto::user::user_service_client::UserServiceClient;
use pillivery_testkit::{Backend, TestDatabase};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use user::{SigningKey, UserConfig, blacklist_key};

const ADMIN_EMAIL: &str = "root@pillivery.test";
const ADMIN_PASSWORD: &str = "admin-pass1!";
const LOGIN_LIMIT: u32 = 4;

struct App {
    users: UserServiceClient<Channel>,
    auth: AuthServiceClient<Channel>,
    kv: KeyValueStore,
}

async fn run<F, Fut>(backend: Option<Backend>, kv: common::Kv, test: F)
where
    F: FnOnce(App) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    let Some(kv) = kv.store().await else { return };
    let database = TestDatabase::fresh(&backend).await;
    let config = UserConfig {
        login_attempts_per_minute: LOGIN_LIMIT,
        admin_email: ADMIN_EMAIL.into(),
        admin_password: Some(ADMIN_PASSWORD.into()),
        ..common::test_config(&database)
    };
    let running = common::start(config, kv.clone()).await;
    test(App {
        users: UserServiceClient::new(running.channel.clone()),
        auth: AuthServiceClient::new(running.channel.clone()),
        kv,
    })
    .await;
    running.stop().await;
    database.remove().await;
}

mod memory {
    on_every_backend!(Memory:
        sign_up_answers_the_stored_profile,
        sign_up_reports_every_violation_at_once,
        each_rule_names_its_field,
        duplicates_conflict_per_field,
        login_succeeds_and_its_failures_look_alike,
        login_is_rate_limited_per_email_and_per_ip,
        refresh_rotates,
        a_reused_refresh_token_revokes_its_family,
        logout_blacklists_the_access_token_and_revokes_the_family,
        logout_without_a_refresh_token_revokes_every_family,
        withdrawal_ends_every_token,
        profile_updates,
        a_new_password_needs_the_current_one,
        only_admins_read_other_users,
        callers_come_only_from_valid_tokens,
        jwks_and_oauth,
    );
}

/// The token scenarios again with Redis holding the blacklist and the counters.
mod redis {
    on_every_backend!(Redis:
        login_is_rate_limited_per_email_and_per_ip,
        refresh_rotates,
        a_reused_refresh_token_revokes_its_family,
        logout_blacklists_the_access_token_and_revokes_the_family,
        withdrawal_ends_every_token,
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn sign_up_request(n: u32) -> pb::SignUpRequest {
    pb::SignUpRequest {
        email: format!("user{n}@example.com"),
        password: "secret12!".into(),
        display_name: format!("건강왕{n}"),
        real_name: "김철수".into(),
        phone: format!("010-1234-{n:04}"),
        city: "서울".into(),
        detail_address: "강남구 테헤란로 1".into(),
    }
}

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

fn authorized<T>(message: T, access_token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {access_token}").parse().unwrap(),
    );
    request
}

fn login_request(email: &str, password: &str, ip: Option<&str>) -> Request<pb::LoginRequest> {
    let mut request = Request::new(pb::LoginRequest {
        email: email.into(),
        password: password.into(),
    });
    if let Some(ip) = ip {
        request
            .metadata_mut()
            .insert("x-client-ip", ip.parse().unwrap());
    }
    request
}

async fn sign_up(app: &mut App, n: u32) -> pb::User {
    app.users
        .sign_up(sign_up_request(n))
        .await
        .unwrap()
        .into_inner()
}

async fn login(app: &mut App, n: u32) -> pb::TokenPair {
    app.auth
        .login(login_request(
            &format!("user{n}@example.com"),
            "secret12!",
            None,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn get_me(app: &mut App, access_token: &str) -> Result<pb::User, Status> {
    app.users
        .get_me(authorized(pb::GetMeRequest {}, access_token))
        .await
        .map(|response| response.into_inner())
}

async fn refresh(app: &mut App, refresh_token: &str) -> Result<pb::TokenPair, Status> {
    app.auth
        .refresh(pb::RefreshRequest {
            refresh_token: refresh_token.into(),
        })
        .await
        .map(|response| response.into_inner())
}

/// The `jti` of an access token, read from its claims.
fn token_id(access_token: &str) -> String {
    use base64::Engine as _;
    let claims = access_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn sign_up_answers_the_stored_profile(mut app: App) {
    let mut request = sign_up_request(1);
    request.email = "User1@Example.COM".into();
    request.phone = "01012340001".into();
    request.display_name = "  건강왕1 ".into();
    let user = app.users.sign_up(request).await.unwrap().into_inner();
    assert!(user.user_id > 0);
    assert_eq!(user.email, "user1@example.com");
    assert_eq!(user.phone, "010-1234-0001");
    assert_eq!(user.display_name, "건강왕1");
    assert_eq!(user.real_name, "김철수");
    assert!(!user.social);
    assert_eq!(user.created_at, user.updated_at);
    let tokens = login(&mut app, 1).await;
    assert_eq!(get_me(&mut app, &tokens.access_token).await.unwrap(), user);
}

async fn sign_up_reports_every_violation_at_once(mut app: App) {
    let status = app
        .users
        .sign_up(pb::SignUpRequest::default())
        .await
        .unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    let fields: Vec<&str> = error
        .field_errors
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "email",
            "password",
            "displayName",
            "realName",
            "phone",
            "city",
            "detailAddress"
        ]
    );
}

async fn each_rule_names_its_field(mut app: App) {
    type Edit = fn(&mut pb::SignUpRequest);
    let cases: &[(&str, Edit)] = &[
        ("email", |r| r.email = "not-an-email".into()),
        ("email", |r| {
            r.email = format!("{}@example.com", "a".repeat(250))
        }),
        ("password", |r| r.password = "short1!".into()),
        ("password", |r| r.password = "noDigits!!".into()),
        ("password", |r| r.password = "12345678!".into()),
        ("password", |r| r.password = "letters123".into()),
        ("password", |r| {
            r.password = format!("a1!{}", "x".repeat(62))
        }),
        ("displayName", |r| r.display_name = "a".into()),
        ("displayName", |r| r.display_name = "가".repeat(21)),
        ("displayName", |r| r.display_name = "    ".into()),
        ("realName", |r| r.real_name = " ".into()),
        ("realName", |r| r.real_name = "김 철수".into()),
        ("phone", |r| r.phone = "012-1234-5678".into()),
        ("phone", |r| r.phone = "010-12-5678".into()),
        ("city", |r| r.city = "  ".into()),
        ("detailAddress", |r| r.detail_address = String::new()),
    ];
    for (field, edit) in cases {
        let mut request = sign_up_request(1);
        edit(&mut request);
        let status = app.users.sign_up(request).await.unwrap_err();
        let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(error.field_errors.len(), 1, "{field}: {error:?}");
        assert_eq!(error.field_errors[0].field, *field);
        assert!(!error.field_errors[0].reason.is_empty());
    }
    // Nothing was created on the way.
    sign_up(&mut app, 1).await;
}

async fn duplicates_conflict_per_field(mut app: App) {
    let first = sign_up(&mut app, 1).await;
    type Edit = fn(&mut pb::SignUpRequest);
    let cases: &[(&str, Edit)] = &[
        ("EMAIL_TAKEN", |r| r.email = "USER1@example.com".into()),
        ("DISPLAY_NAME_TAKEN", |r| r.display_name = "건강왕1".into()),
        ("PHONE_TAKEN", |r| r.phone = "01012340001".into()),
    ];
    for (reason, edit) in cases {
        let mut request = sign_up_request(2);
        edit(&mut request);
        let status = app.users.sign_up(request).await.unwrap_err();
        assert_error(status, Code::AlreadyExists, reason);
    }
    // A withdrawn account frees all three.
    let tokens = login(&mut app, 1).await;
    app.users
        .withdraw(authorized(pb::WithdrawRequest {}, &tokens.access_token))
        .await
        .unwrap();
    let again = sign_up(&mut app, 1).await;
    assert_ne!(again.user_id, first.user_id);
}

async fn login_succeeds_and_its_failures_look_alike(mut app: App) {
    sign_up(&mut app, 1).await;
    sign_up(&mut app, 2).await;
    let tokens = login(&mut app, 1).await;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900);
    assert_eq!(tokens.access_token.split('.').count(), 3);
    assert_eq!(tokens.refresh_token.len(), 43);
    // Case of the e-mail does not matter.
    app.auth
        .login(login_request("USER1@EXAMPLE.COM", "secret12!", None))
        .await
        .unwrap();

    let withdrawn = login(&mut app, 2).await;
    app.users
        .withdraw(authorized(pb::WithdrawRequest {}, &withdrawn.access_token))
        .await
        .unwrap();
    let mut messages = Vec::new();
    for (email, password) in [
        ("nobody@example.com", "secret12!"),
        ("user1@example.com", "wrong-pass1!"),
        ("user2@example.com", "secret12!"),
    ] {
        let status = app
            .auth
            .login(login_request(email, password, None))
            .await
            .unwrap_err();
        messages.push(assert_error(status, Code::Unauthenticated, "BAD_CREDENTIALS").message);
    }
    assert!(
        messages.windows(2).all(|pair| pair[0] == pair[1]),
        "{messages:?}"
    );
}

async fn login_is_rate_limited_per_email_and_per_ip(mut app: App) {
    sign_up(&mut app, 1).await;
    // Per e-mail, whatever the address: the limit counts failures and successes alike.
    for attempt in 0..LOGIN_LIMIT {
        let ip = format!("10.0.0.{attempt}");
        let result = app
            .auth
            .login(login_request(
                "user1@example.com",
                "wrong-pass1!",
                Some(&ip),
            ))
            .await;
        assert_error(
            result.unwrap_err(),
            Code::Unauthenticated,
            "BAD_CREDENTIALS",
        );
    }
    let status = app
        .auth
        .login(login_request(
            "user1@example.com",
            "secret12!",
            Some("10.0.1.1"),
        ))
        .await
        .unwrap_err();
    assert_error(status, Code::ResourceExhausted, "TOO_MANY_LOGIN_ATTEMPTS");

    // Per IP, whatever the e-mail.
    for attempt in 0..LOGIN_LIMIT {
        let email = format!("someone{attempt}@example.com");
        let status = app
            .auth
            .login(login_request(&email, "secret12!", Some("192.0.2.7")))
            .await
            .unwrap_err();
        assert_error(status, Code::Unauthenticated, "BAD_CREDENTIALS");
    }
    let status = app
        .auth
        .login(login_request(
            "other@example.com",
            "secret12!",
            Some("192.0.2.7"),
        ))
        .await
        .unwrap_err();
    assert_error(status, Code::ResourceExhausted, "TOO_MANY_LOGIN_ATTEMPTS");
}

async fn refresh_rotates(mut app: App) {
    let user = sign_up(&mut app, 1).await;
    let first = login(&mut app, 1).await;
    let second = refresh(&mut app, &first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.token_type, "Bearer");
    assert_eq!(
        get_me(&mut app, &second.access_token)
            .await
            .unwrap()
            .user_id,
        user.user_id
    );
    let third = refresh(&mut app, &second.refresh_token).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    for unknown in ["", "not-a-token", &"A".repeat(43)] {
        let status = refresh(&mut app, unknown).await.unwrap_err();
        assert_error(status, Code::Unauthenticated, "INVALID_REFRESH_TOKEN");
    }
}

async fn a_reused_refresh_token_revokes_its_family(mut app: App) {
    sign_up(&mut app, 1).await;
    let stolen = login(&mut app, 1).await;
    let other_session = login(&mut app, 1).await;
    let legit = refresh(&mut app, &stolen.refresh_token).await.unwrap();
    let status = refresh(&mut app, &stolen.refresh_token).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");
    // The whole family is gone, the successor included …
    let status = refresh(&mut app, &legit.refresh_token).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "INVALID_REFRESH_TOKEN");
    // … and presenting the spent one again is still recognised.
    let status = refresh(&mut app, &stolen.refresh_token).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");
    // Another family (another login) is untouched.
    refresh(&mut app, &other_session.refresh_token)
        .await
        .unwrap();
}

async fn logout_blacklists_the_access_token_and_revokes_the_family(mut app: App) {
    sign_up(&mut app, 1).await;
    sign_up(&mut app, 2).await;
    let session = login(&mut app, 1).await;
    let other_session = login(&mut app, 1).await;
    let stranger = login(&mut app, 2).await;
    let jti = token_id(&session.access_token);
    assert_eq!(app.kv.get(&blacklist_key(&jti)).await.unwrap(), None);

    // Someone else's refresh token is not revoked by my logout.
    app.auth
        .logout(authorized(
            pb::LogoutRequest {
                refresh_token: Some(stranger.refresh_token.clone()),
            },
            &other_session.access_token,
        ))
        .await
        .unwrap();
    refresh(&mut app, &stranger.refresh_token).await.unwrap();

    app.auth
        .logout(authorized(
            pb::LogoutRequest {
                refresh_token: Some(session.refresh_token.clone()),
            },
            &session.access_token,
        ))
        .await
        .unwrap();
    assert!(app.kv.get(&blacklist_key(&jti)).await.unwrap().is_some());
    let status = get_me(&mut app, &session.access_token).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "INVALID_TOKEN");
    let status = refresh(&mut app, &session.refresh_token).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "INVALID_REFRESH_TOKEN");
    // Logging out again is fine.
    app.auth
        .logout(authorized(
            pb::LogoutRequest::default(),
            &session.access_token,
        ))
        .await
        .unwrap();
}

async fn logout_without_a_refresh_token_revokes_every_family(mut app: App) {
    sign_up(&mut app, 1).await;
    let first = login(&mut app, 1).await;
    let second = login(&mut app, 1).await;
    app.auth
        .logout(authorized(
            pb::LogoutRequest::default(),
            &first.access_token,
        ))
        .await
        .unwrap();
    for token in [&first.refresh_token, &second.refresh_token] {
        let status = refresh(&mut app, token).await.unwrap_err();
        assert_error(status, Code::Unauthenticated, "INVALID_REFRESH_TOKEN");
    }
    // The other session's access token lives until it expires.
    get_me(&mut app, &second.access_token).await.unwrap();
}

async fn withdrawal_ends_every_token(mut app: App) {
    sign_up(&mut app, 1).await;
    let first = login(&mut app, 1).await;
    let second = login(&mut app, 1).await;
    app.users
        .withdraw(authorized(pb::WithdrawRequest {}, &first.access_token))
        .await
        .unwrap();
    assert!(
        app.kv
            .get(&blacklist_key(&token_id(&first.access_token)))
            .await
            .unwrap()
            .is_some()
    );
    for access in [&first.access_token, &second.access_token] {
        let status = get_me(&mut app, access).await.unwrap_err();
        assert_error(status, Code::Unauthenticated, "INVALID_TOKEN");
    }
    for token in [&first.refresh_token, &second.refresh_token] {
        let status = refresh(&mut app, token).await.unwrap_err();
        assert_error(status, Code::Unauthenticated, "INVALID_REFRESH_TOKEN");
    }
    let status = app
        .auth
        .login(login_request("user1@example.com", "secret12!", None))
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "BAD_CREDENTIALS");
    let status = app
        .users
        .withdraw(authorized(pb::WithdrawRequest {}, &second.access_token))
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "INVALID_TOKEN");
}

async fn profile_updates(mut app: App) {
    let before = sign_up(&mut app, 1).await;
    sign_up(&mut app, 2).await;
    let tokens = login(&mut app, 1).await;
    let updated = app
        .users
        .update_me(authorized(
            pb::UpdateMeRequest {
                display_name: Some("새이름".into()),
                phone: Some("01198765432".into()),
                city: Some("부산".into()),
                ..Default::default()
            },
            &tokens.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "새이름");
    assert_eq!(updated.phone, "011-9876-5432");
    assert_eq!(updated.city, "부산");
    assert_eq!(updated.real_name, before.real_name);
    assert_eq!(updated.detail_address, before.detail_address);
    assert_eq!(updated.created_at, before.created_at);
    assert_ne!(updated.updated_at, before.updated_at);
    assert_eq!(
        get_me(&mut app, &tokens.access_token).await.unwrap(),
        updated
    );

    let status = app
        .users
        .update_me(authorized(
            pb::UpdateMeRequest {
                display_name: Some("건강왕2".into()),
                ..Default::default()
            },
            &tokens.access_token,
        ))
        .await
        .unwrap_err();
    assert_error(status, Code::AlreadyExists, "DISPLAY_NAME_TAKEN");
    let status = app
        .users
        .update_me(authorized(
            pb::UpdateMeRequest {
                display_name: Some("x".into()),
                real_name: Some("".into()),
                ..Default::default()
            },
            &tokens.access_token,
        ))
        .await
        .unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    let fields: Vec<&str> = error
        .field_errors
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(fields, ["displayName", "realName"]);
    // The old display name is free again.
    let mut request = sign_up_request(3);
    request.display_name = "건강왕1".into();
    app.users.sign_up(request).await.unwrap();
}

async fn a_new_password_needs_the_current_one(mut app: App) {
    sign_up(&mut app, 1).await;
    let tokens = login(&mut app, 1).await;
    for current in [None, Some("wrong-pass1!")] {
        let status = app
            .users
            .update_me(authorized(
                pb::UpdateMeRequest {
                    password: Some("newpass12!".into()),
                    current_password: current.map(str::to_owned),
                    ..Default::default()
                },
                &tokens.access_token,
            ))
            .await
            .unwrap_err();
        let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(error.field_errors.len(), 1, "{error:?}");
        assert_eq!(error.field_errors[0].field, "currentPassword");
    }
    app.users
        .update_me(authorized(
            pb::UpdateMeRequest {
                password: Some("newpass12!".into()),
                current_password: Some("secret12!".into()),
                ..Default::default()
            },
            &tokens.access_token,
        ))
        .await
        .unwrap();
    let status = app
        .auth
        .login(login_request("user1@example.com", "secret12!", None))
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "BAD_CREDENTIALS");
    app.auth
        .login(login_request("user1@example.com", "newpass12!", None))
        .await
        .unwrap();
}

async fn only_admins_read_other_users(mut app: App) {
    let user = sign_up(&mut app, 1).await;
    let tokens = login(&mut app, 1).await;
    let status = app
        .users
        .get_user(authorized(
            pb::GetUserRequest {
                user_id: user.user_id,
            },
            &tokens.access_token,
        ))
        .await
        .unwrap_err();
    assert_error(status, Code::PermissionDenied, "FORBIDDEN");

    // The admin account was made at start from the configuration.
    let admin = app
        .auth
        .login(login_request(ADMIN_EMAIL, ADMIN_PASSWORD, None))
        .await
        .unwrap()
        .into_inner();
    let read = app
        .users
        .get_user(authorized(
            pb::GetUserRequest {
                user_id: user.user_id,
            },
            &admin.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, user);
    let status = app
        .users
        .get_user(authorized(
            pb::GetUserRequest { user_id: 999_999 },
            &admin.access_token,
        ))
        .await
        .unwrap_err();
    assert_error(status, Code::NotFound, "USER_NOT_FOUND");
}

async fn callers_come_only_from_valid_tokens(mut app: App) {
    sign_up(&mut app, 1).await;
    let status = app
        .users
        .get_me(Request::new(pb::GetMeRequest {}))
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "AUTHENTICATION_REQUIRED");
    let tokens = login(&mut app, 1).await;
    let mut tampered = tokens.access_token.clone();
    tampered.pop();
    tampered.push(if tokens.access_token.ends_with('A') {
        'B'
    } else {
        'A'
    });
    for token in [tampered.as_str(), "a.b.c", "garbage"] {
        let status = get_me(&mut app, token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token}");
    }
    // A token signed by another key.
    let foreign = pillivery_platform::auth::TokenIssuer::new(
        SigningKey::generate(),
        pillivery_platform::auth::TokenConfig::default(),
    )
    .issue(1, pillivery_platform::auth::Role::Admin, chrono::Utc::now());
    let status = get_me(&mut app, &foreign.token).await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "INVALID_TOKEN");
}

async fn jwks_and_oauth(mut app: App) {
    let jwks = app
        .auth
        .get_jwks(pb::GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwks.keys.len(), 1);
    let key = &jwks.keys[0];
    assert_eq!(
        (
            key.kty.as_str(),
            key.crv.as_str(),
            key.alg.as_str(),
            key.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );
    // Tokens name this key.
    sign_up(&mut app, 1).await;
    let tokens = login(&mut app, 1).await;
    use base64::Engine as _;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tokens.access_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], key.kid.as_str());
    assert_eq!(header["alg"], "EdDSA");
}

/// Withdrawal publishes exactly one `UserWithdrawn` (written in the withdrawal's transaction,
/// published by the relay), which the order service consumes to cancel subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_publishes_user_withdrawn_once() {
    use pillivery_platform::events::{EventBus, EventsConfig};
    use prost::Message;

    let database = TestDatabase::fresh(&Backend::Sqlite).await;
    let events = EventsConfig::default();
    let bus = EventBus::in_memory(&events);
    bus.backend().ensure_group("user", "test").await.unwrap();
    let kv = KeyValueStore::in_memory();
    let running =
        common::start_with_bus(common::test_config(&database), kv.clone(), bus.clone()).await;
    let mut app = App {
        users: UserServiceClient::new(running.channel.clone()),
        auth: AuthServiceClient::new(running.channel.clone()),
        kv,
    };
    let user = sign_up(&mut app, 1).await;
    let tokens = login(&mut app, 1).await;
    app.users
        .withdraw(authorized(pb::WithdrawRequest {}, &tokens.access_token))
        .await
        .unwrap();
    let streams = ["user".to_owned()];
    let deliveries = bus
        .backend()
        .read(
            "test",
            "reader",
            &streams,
            10,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1, "one event for one withdrawal");
    let event = deliveries[0].event.as_ref().unwrap();
    assert_eq!(event.event_type, "UserWithdrawn");
    assert_eq!(event.aggregate_id, user.user_id.to_string());
    let payload = pillivery_proto::events::UserWithdrawn::decode(event.payload.as_slice()).unwrap();
    assert_eq!(payload.user_id, user.user_id);
    assert!(payload.withdrawn_at.is_some());
    // And nothing else: the relay publishes each outbox row once.
    let again = bus
        .backend()
        .read(
            "test",
            "reader",
            &streams,
            10,
            std::time::Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    running.stop().await;
    database.remove().await;
}
