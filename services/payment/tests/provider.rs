//! The KakaoPay client against the sandbox: every kind of answer is classified into what the
//! service must do with it (declined / not sent / unknown), and declines are neither retried
//! nor counted against the PG.
//!
//! One test in its own binary: it reads the process-wide PG call counters.

use std::time::Duration;

use payment::provider::kakaopay::{KakaoPay, KakaoPayConfig};
use payment::provider::{
    Contract, PaymentProvider, ProviderError, ReadyRequest, SubscriptionChargeRequest,
};
use pillivery_platform::resilience::EdgePolicy;
use pillivery_platform::shutdown::Shutdown;
use pillivery_sandbox_pg::{DEFAULT_SECRET_KEY, FaultConfig, Sandbox, SandboxConfig};

fn counter(metrics: &str, path: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("pillivery_pg_calls_total"))
        .filter(|line| line.contains(&format!("path=\"{path}\"")))
        .find(|line| line.contains(&format!("outcome=\"{outcome}\"")))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn client(base_url: &str, secret_key: &str) -> KakaoPay {
    KakaoPay::new(&KakaoPayConfig {
        base_url: base_url.to_owned(),
        secret_key: secret_key.to_owned(),
        edge: EdgePolicy {
            default_deadline_ms: 400,
            max_retries: 2,
            retry_base_ms: 5,
            retry_max_ms: 20,
            ..EdgePolicy::default()
        },
        ..KakaoPayConfig::default()
    })
    .unwrap()
}

fn ready_request() -> ReadyRequest {
    ReadyRequest {
        contract: Contract::OneTime,
        partner_order_id: "order-1".into(),
        partner_user_id: "1".into(),
        item_name: "비타민C".into(),
        quantity: 1,
        total_amount: 1_000,
        approval_url: "http://shop.test/approve".into(),
        cancel_url: "http://shop.test/cancel".into(),
        fail_url: "http://shop.test/fail".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_classified_declines_are_sent_once() {
    let metrics = pillivery_platform::telemetry::metrics_handle();
    let shutdown = Shutdown::new();
    let bound = Sandbox::bind(SandboxConfig::loopback()).await.unwrap();
    let sandbox = bound.sandbox();
    let base = bound.base_url().to_owned();
    tokio::spawn(bound.serve(shutdown.clone()));
    let pg = client(&base, DEFAULT_SECRET_KEY);

    // A charge of an unknown SID: the PG is healthy and says no, once.
    let subscription = "/online/v1/payment/subscription";
    let before = counter(&metrics.render(), subscription, "declined");
    let declined = pg
        .charge_subscription(&SubscriptionChargeRequest {
            sid: "S-NOPE".into(),
            partner_order_id: "sub-1-c1".into(),
            partner_user_id: "1".into(),
            item_name: "비타민C".into(),
            quantity: 1,
            total_amount: 1_000,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&declined, ProviderError::Declined { code, .. } if code == "-782"),
        "{declined:?}"
    );
    assert_eq!(
        counter(&metrics.render(), subscription, "declined"),
        before + 1
    );

    // A wrong secret key is a refusal too (a configuration error, not an unwell PG).
    let unauthorized = client(&base, "WRONG")
        .ready(&ready_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&unauthorized, ProviderError::Declined { code, .. } if code == "-401"),
        "{unauthorized:?}"
    );

    // 5xx: the PG may have done something. A ready is never repeated.
    sandbox
        .set_faults(FaultConfig {
            server_error_rate: 1.0,
            ..FaultConfig::default()
        })
        .unwrap();
    let ready = "/online/v1/payment/ready";
    let faults_before = counter(&metrics.render(), ready, "fault");
    let five_hundred = pg.ready(&ready_request()).await.unwrap_err();
    assert!(
        matches!(five_hundred, ProviderError::Unknown(_)),
        "{five_hundred:?}"
    );
    assert_eq!(
        counter(&metrics.render(), ready, "fault"),
        faults_before + 1
    );

    // A PG that holds the call past the deadline: unknown.
    sandbox
        .set_faults(FaultConfig {
            timeout_rate: 1.0,
            timeout_hold_ms: 5_000,
            ..FaultConfig::default()
        })
        .unwrap();
    let timeout = pg.ready(&ready_request()).await.unwrap_err();
    assert!(matches!(timeout, ProviderError::Unknown(_)), "{timeout:?}");
    sandbox.set_faults(FaultConfig::default()).unwrap();

    // Nobody listening: certainly not sent.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let refused = client(&closed_url, DEFAULT_SECRET_KEY)
        .lookup(Contract::OneTime, "T1")
        .await
        .unwrap_err();
    assert!(matches!(refused, ProviderError::NotSent(_)), "{refused:?}");

    // And the happy path reads KakaoPay's shapes.
    let answer = tokio::time::timeout(Duration::from_secs(5), pg.ready(&ready_request()))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.next_redirect_pc_url.starts_with(&base), "{answer:?}");
    let lookup = pg.lookup(Contract::OneTime, &answer.tid).await.unwrap();
    assert_eq!(lookup.status, "READY");
    shutdown.trigger();
}
