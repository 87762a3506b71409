//! Fault injection over real HTTP: 5xx, timeouts before and after the charge is committed,
//! declines, latency, the 5xx ramp, the admin endpoints, faults from configuration, and a
//! shutdown that does not wait for held calls.

mod support;

use std::time::{Duration, Instant};

use pillivery_sandbox_pg::{
    Endpoint, EndpointSet, FaultConfig, FaultStatus, LedgerFilter, RampConfig, SandboxConfig,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

/// A first approval on the subscription CID; its SID.
async fn sid_of_new_subscription(harness: &Harness, order: &str) -> String {
    let first = harness.pay(SUBSCRIPTION, order, 10_000).await;
    text(&first, "sid").to_owned()
}

#[tokio::test]
async fn a_server_error_rate_of_one_answers_500_and_does_nothing() {
    let harness = spawn().await;
    harness.set_faults(json!({"server_error_rate": 1.0})).await;
    for _ in 0..5 {
        let (status, body) = harness
            .kakao(
                "/online/v1/payment/ready",
                ready_body(ONE_TIME, "order-500", 1_000, APPROVAL_URL),
            )
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_code(status, &body), -9798);
    }
    // Faults apply only to KakaoPay's endpoints: the ledger and the page still answer.
    assert_eq!(harness.ledger("").await.entries.len(), 0);
    harness.reset_faults().await;
    harness.ready(ONE_TIME, "order-500", 1_000).await;
}

#[tokio::test]
async fn faults_hit_only_the_endpoints_they_name() {
    let harness = spawn().await;
    harness
        .set_faults(json!({"server_error_rate": 1.0, "endpoints": ["approve"]}))
        .await;
    let ready = harness.ready(ONE_TIME, "order-only", 2_000).await;
    let pg_token = harness.buyer_approves(&ready).await;
    let (status, _) = harness
        .approve(ONE_TIME, text(&ready, "tid"), "order-only", &pg_token)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, lookup) = harness
        .kakao(
            "/online/v1/payment/order",
            json!({"cid": ONE_TIME, "tid": ready["tid"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lookup["status"], "AUTH_PASSWORD", "the 500 did nothing");
    harness.reset_faults().await;
    let (status, _) = harness
        .approve(ONE_TIME, text(&ready, "tid"), "order-only", &pg_token)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn injected_declines_are_minus_782_charge_nothing_and_are_not_remembered() {
    let harness = spawn().await;
    let sid = sid_of_new_subscription(&harness, "sub-d-first").await;
    let (status, paid) = harness.charge(&sid, "sub-d-cycle-2", 10_000).await;
    assert_eq!(status, StatusCode::OK);

    harness.set_faults(json!({"decline_rate": 1.0})).await;
    let (status, body) = harness.charge(&sid, "sub-d-cycle-3", 10_000).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(status, &body), -782);
    assert_eq!(body["extras"]["method_result_code"], "DECLINED");
    assert_eq!(
        harness
            .ledger("?partner_order_id=sub-d-cycle-3")
            .await
            .charges,
        0
    );
    // A repeat of a charge already made is answered as made, never declined after the fact.
    let (status, repeat) = harness.charge(&sid, "sub-d-cycle-2", 10_000).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repeat, paid);
    // Declines are for subscription charges only.
    harness.pay(ONE_TIME, "order-d", 1_000).await;

    harness.reset_faults().await;
    let (status, body) = harness.charge(&sid, "sub-d-cycle-3", 10_000).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a later retry of a declined cycle: {body}"
    );
    assert_eq!(
        harness
            .ledger("?partner_order_id=sub-d-cycle-3")
            .await
            .charges,
        1
    );
}

#[tokio::test]
async fn a_timeout_after_commit_leaves_the_charge_in_the_ledger_and_a_repeat_answers_it() {
    let harness = spawn().await;
    let sid = sid_of_new_subscription(&harness, "sub-t-first").await;
    harness
        .set_faults(json!({
            "timeout_after_commit_rate": 1.0,
            "timeout_hold_ms": 30_000,
            "endpoints": ["subscription"],
        }))
        .await;
    let impatient = client(Duration::from_millis(300));
    let started = Instant::now();
    let error = impatient
        .post(format!("{}/online/v1/payment/subscription", harness.base))
        .header(
            "Authorization",
            format!("SECRET_KEY {}", pillivery_sandbox_pg::DEFAULT_SECRET_KEY),
        )
        .json(&charge_body(&sid, "sub-t-cycle-2", 10_000))
        .send()
        .await
        .expect_err("the client gives up before the sandbox answers");
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // The outcome the client did not hear: charged.
    let filter = LedgerFilter {
        partner_order_id: Some("sub-t-cycle-2".into()),
        ..LedgerFilter::default()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            harness.sandbox.ledger(&filter).charges == 1
        })
        .await
    );
    let charged = harness.sandbox.ledger(&filter).entries[0].clone();

    // Resolving it: the repeat with the same partner_order_id answers that charge.
    harness.reset_faults().await;
    let (status, repeat) = harness.charge(&sid, "sub-t-cycle-2", 10_000).await;
    assert_eq!(status, StatusCode::OK, "{repeat}");
    assert_eq!(repeat["tid"], charged.tid.as_str());
    assert_eq!(repeat["aid"], charged.aid.as_str());
    assert_eq!(harness.sandbox.ledger(&filter).charges, 1);
}

#[tokio::test]
async fn a_timeout_after_commit_on_approve_is_resolved_by_a_lookup() {
    let harness = spawn().await;
    let ready = harness.ready(ONE_TIME, "order-ta", 7_000).await;
    let pg_token = harness.buyer_approves(&ready).await;
    harness
        .set_faults(json!({"timeout_after_commit_rate": 1.0, "endpoints": "approve"}))
        .await;
    let impatient = client(Duration::from_millis(300));
    let approve = json!({
        "cid": ONE_TIME, "tid": ready["tid"], "partner_order_id": "order-ta",
        "partner_user_id": "user-1", "pg_token": pg_token,
    });
    let error = harness
        .send(&impatient, "/online/v1/payment/approve", &approve)
        .await
        .expect_err("the client gives up");
    assert!(error.is_timeout(), "{error}");
    // Lookups are not among the faulted endpoints here: they tell the client what happened.
    let (status, lookup) = harness
        .kakao(
            "/online/v1/payment/order",
            json!({"cid": ONE_TIME, "tid": ready["tid"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lookup["status"], "SUCCESS_PAYMENT");
    harness.reset_faults().await;
    let (status, body) = harness.kakao("/online/v1/payment/approve", approve).await;
    assert_eq!(
        error_code(status, &body),
        -702,
        "approving again is refused"
    );
    assert_eq!(harness.ledger("").await.charges, 1);
}

#[tokio::test]
async fn a_timeout_before_commit_holds_the_call_and_does_nothing() {
    let harness = spawn().await;
    let sid = sid_of_new_subscription(&harness, "sub-h-first").await;
    harness
        .set_faults(json!({"timeout_rate": 1.0, "timeout_hold_ms": 30_000}))
        .await;
    let impatient = client(Duration::from_millis(300));
    let error = harness
        .send(
            &impatient,
            "/online/v1/payment/subscription",
            &charge_body(&sid, "sub-h-cycle-2", 10_000),
        )
        .await
        .expect_err("the client gives up");
    assert!(error.is_timeout(), "{error}");
    // A patient client hears 504 once a short hold is over.
    harness
        .set_faults(json!({"timeout_rate": 1.0, "timeout_hold_ms": 150}))
        .await;
    let started = Instant::now();
    let (status, body) = harness.charge(&sid, "sub-h-cycle-2", 10_000).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_code(status, &body), -9799);
    assert_eq!(
        harness
            .ledger("?partner_order_id=sub-h-cycle-2")
            .await
            .charges,
        0
    );
}

#[tokio::test]
async fn latency_is_added_fixed_or_within_a_range() {
    let harness = spawn().await;
    harness.set_faults(json!({"latency_min_ms": 250})).await;
    let started = Instant::now();
    harness.ready(ONE_TIME, "order-slow", 1_000).await;
    assert!(started.elapsed() >= Duration::from_millis(250));

    harness
        .set_faults(json!({"latency_min_ms": 100, "latency_max_ms": 150, "endpoints": ["order"]}))
        .await;
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _) = harness
            .kakao(
                "/online/v1/payment/order",
                json!({"cid": ONE_TIME, "tid": "T0000000000000000000"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}

async fn fault_status(harness: &Harness) -> FaultStatus {
    let (status, body) = harness.admin(Method::GET, "/sandbox/faults", None).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_value(body).unwrap()
}

async fn ready_status(harness: &Harness, order: &str) -> StatusCode {
    harness
        .kakao(
            "/online/v1/payment/ready",
            ready_body(ONE_TIME, order, 1_000, APPROVAL_URL),
        )
        .await
        .0
}

#[tokio::test]
async fn the_failure_rate_ramps_from_its_start_to_its_end() {
    let harness = spawn().await;
    // At the start of a slow ramp up, nearly nothing fails.
    harness
        .set_faults(
            json!({"ramp": {"from_rate": 0.0, "to_rate": 1.0, "over_seconds": 3600}, "seed": 11}),
        )
        .await;
    assert!(fault_status(&harness).await.current_server_error_rate < 0.01);
    for call in 0..20 {
        assert_eq!(
            ready_status(&harness, &format!("ramp-up-{call}")).await,
            StatusCode::OK
        );
    }
    // At the start of a slow ramp down, nearly everything fails.
    harness
        .set_faults(
            json!({"ramp": {"from_rate": 1.0, "to_rate": 0.0, "over_seconds": 3600}, "seed": 11}),
        )
        .await;
    assert!(fault_status(&harness).await.current_server_error_rate > 0.99);
    for call in 0..20 {
        assert_eq!(
            ready_status(&harness, &format!("ramp-down-{call}")).await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    // A short ramp reaches its end and stays there.
    harness
        .set_faults(json!({"ramp": {"from_rate": 0.0, "to_rate": 1.0, "over_seconds": 1}}))
        .await;
    let first = fault_status(&harness).await.current_server_error_rate;
    assert!(first < 0.5, "{first}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            fault_status(&harness).await.current_server_error_rate >= 1.0
        })
        .await
    );
    for call in 0..10 {
        assert_eq!(
            ready_status(&harness, &format!("ramp-end-{call}")).await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

#[tokio::test]
async fn the_admin_endpoints_read_replace_validate_and_reset_the_faults() {
    let harness = spawn().await;
    let initial = fault_status(&harness).await;
    assert_eq!(initial.faults, FaultConfig::default());
    assert_eq!(initial.current_server_error_rate, 0.0);

    for invalid in [
        json!({"server_error_rate": 2.0}),
        json!({"server_error_rate": 0.7, "decline_rate": 0.7}),
        json!({"latency_min_ms": 100, "latency_max_ms": 50}),
        json!({"endpoints": ["refund"]}),
        json!({"server_errors": 0.5}),
        json!("all of them"),
    ] {
        let (status, body) = harness
            .admin(Method::POST, "/sandbox/faults", Some(invalid.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{invalid}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(fault_status(&harness).await.faults, FaultConfig::default());

    let (status, body) = harness
        .admin(
            Method::POST,
            "/sandbox/faults",
            Some(json!({
                "server_error_rate": 0.2, "timeout_after_commit_rate": 0.1,
                "decline_rate": 0.05, "latency_min_ms": 5, "latency_max_ms": 10,
                "endpoints": ["subscription", "approve"], "seed": 3,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let installed = fault_status(&harness).await;
    assert_eq!(
        installed.faults,
        FaultConfig {
            server_error_rate: 0.2,
            timeout_after_commit_rate: 0.1,
            decline_rate: 0.05,
            latency_min_ms: 5,
            latency_max_ms: 10,
            endpoints: EndpointSet::of(&[Endpoint::Approve, Endpoint::Subscription]),
            seed: Some(3),
            ..FaultConfig::default()
        }
    );
    assert_eq!(harness.sandbox.faults().faults, installed.faults);
    assert_eq!(installed.current_server_error_rate, 0.2);

    harness.reset_faults().await;
    assert_eq!(fault_status(&harness).await.faults, FaultConfig::default());
}

#[tokio::test]
async fn a_seed_makes_the_fault_sequence_reproducible() {
    let harness = spawn().await;
    let faults = json!({"server_error_rate": 0.5, "seed": 2024, "endpoints": ["ready"]});
    let mut runs = Vec::new();
    for run in 0..2 {
        harness.set_faults(faults.clone()).await;
        let mut statuses = Vec::new();
        for call in 0..24 {
            statuses.push(ready_status(&harness, &format!("seed-{run}-{call}")).await);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&StatusCode::OK));
    assert!(runs[0].contains(&StatusCode::INTERNAL_SERVER_ERROR));
}

#[tokio::test]
async fn faults_can_be_configured_at_start_and_changed_in_process() {
    let mut config = SandboxConfig::loopback();
    config.faults = FaultConfig {
        server_error_rate: 1.0,
        endpoints: EndpointSet::of(&[Endpoint::Ready]),
        ..FaultConfig::default()
    };
    let harness = spawn_with(config).await;
    assert_eq!(
        ready_status(&harness, "order-start").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(
        harness
            .sandbox
            .set_faults(FaultConfig {
                timeout_rate: 1.5,
                ..FaultConfig::default()
            })
            .is_err()
    );
    harness.sandbox.set_faults(FaultConfig::default()).unwrap();
    assert_eq!(ready_status(&harness, "order-start").await, StatusCode::OK);
    harness
        .sandbox
        .set_faults(FaultConfig {
            ramp: Some(RampConfig {
                from_rate: 1.0,
                to_rate: 1.0,
                over_seconds: 0,
            }),
            ..FaultConfig::default()
        })
        .unwrap();
    assert_eq!(
        ready_status(&harness, "order-start-2").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn shutdown_releases_held_calls_at_once() {
    let mut harness = spawn().await;
    harness
        .set_faults(json!({"timeout_rate": 1.0, "timeout_hold_ms": 600_000}))
        .await;
    let held = {
        let client = harness.client.clone();
        let url = format!("{}/online/v1/payment/ready", harness.base);
        tokio::spawn(async move {
            client
                .post(url)
                .header(
                    "Authorization",
                    format!("SECRET_KEY {}", pillivery_sandbox_pg::DEFAULT_SECRET_KEY),
                )
                .json(&ready_body(ONE_TIME, "order-held", 1_000, APPROVAL_URL))
                .send()
                .await
                .map(|response| response.status())
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            fault_status(&harness).await.held_calls == 1
        })
        .await,
        "the call is being held"
    );
    let started = Instant::now();
    harness.stop();
    let served = tokio::time::timeout(Duration::from_secs(10), &mut harness.served)
        .await
        .expect("the sandbox stops well before the hold ends")
        .expect("the serve task did not panic");
    assert!(served.is_ok(), "{served:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let answer = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held call is answered")
        .expect("the call task did not panic");
    assert_eq!(answer.ok(), Some(StatusCode::GATEWAY_TIMEOUT));
}
