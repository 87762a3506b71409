//! The PG edge's circuit breaker, seen from outside: with the sandbox failing hard the breaker
//! opens (the payment service's `/metrics` says so), charges fail fast with UNAVAILABLE without
//! reaching the PG, and once the PG recovers the breaker closes again.
//!
//! Its own test binary: breaker metrics are process-wide, and no other test may move them.

#[macro_use]
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Backend, Harness, Setup, assert_error};
use pillivery_platform::resilience::{BreakerConfig, EdgePolicy};
use pillivery_proto::payment as pb;
use pillivery_sandbox_pg::{Endpoint, EndpointSet, FaultConfig};
use pillivery_testkit::eventually;
use tonic::Code;

const USER: i64 = 5;
const ORIGIN: i64 = 4_000;

fn breaker_state(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| {
            line.starts_with("pillivery_circuit_breaker_state") && line.contains("breaker=\"pg\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_opens_fails_fast_and_closes_after_recovery() {
    let harness = Harness::start_with(
        &Backend::Sqlite,
        Setup {
            edge: EdgePolicy {
                breaker: BreakerConfig {
                    window: 20,
                    minimum_calls: 10,
                    failure_rate_percent: 60,
                    open_for_ms: 500,
                    half_open_trials: 2,
                },
                max_retries: 0,
                default_deadline_ms: 2_000,
                ..EdgePolicy::default()
            },
            ..Setup::default()
        },
    )
    .await;
    harness.orders.add(ORIGIN, USER, 10_000, true);
    harness.pay(USER, ORIGIN).await;
    assert_eq!(breaker_state(&harness.metrics().await), Some(0.0));

    harness
        .sandbox
        .set_faults(FaultConfig {
            server_error_rate: 1.0,
            endpoints: EndpointSet::of(&[Endpoint::Subscription]),
            ..FaultConfig::default()
        })
        .unwrap();
    // Every charge fails at the PG until the breaker has seen enough.
    let mut cycle = 0;
    eventually("the breaker opens", Duration::from_secs(10), || {
        cycle += 1;
        let this_cycle = cycle;
        let harness = &harness;
        async move {
            let failed = harness
                .charge(1, this_cycle, ORIGIN, USER, 1_000, 1)
                .await
                .unwrap_err();
            assert_error(failed, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
            (breaker_state(&harness.metrics().await) == Some(1.0)).then_some(())
        }
    })
    .await;
    // Open: calls never reach the PG. Their latency is reported, not asserted (DESIGN: speed is
    // measured, not timed in unit tests).
    let reached = harness.provider.charge_calls.load(Ordering::SeqCst);
    let ledger_before = harness.sandbox.ledger(&Default::default()).charges;
    let mut slowest = Duration::ZERO;
    for extra in 0..20 {
        let started = Instant::now();
        let failed = harness
            .charge(2, 1 + extra, ORIGIN, USER, 1_000, 1)
            .await
            .unwrap_err();
        slowest = slowest.max(started.elapsed());
        assert_error(failed, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    }
    println!(
        "open breaker: slowest refusal at the PG edge {} µs; slowest ChargeSubscription round trip (gRPC + database) {slowest:?}",
        harness
            .provider
            .slowest_not_sent_micros
            .load(Ordering::SeqCst)
    );
    assert_eq!(
        harness.sandbox.ledger(&Default::default()).charges,
        ledger_before
    );
    assert!(harness.provider.charge_calls.load(Ordering::SeqCst) >= reached);
    let metrics = harness.metrics().await;
    assert!(
        metrics.contains("pillivery_circuit_breaker_rejected_total{breaker=\"pg\"}"),
        "{metrics}"
    );

    // The PG recovers: after the open period, trial calls close the breaker.
    harness.sandbox.set_faults(FaultConfig::default()).unwrap();
    let mut recovered_cycle = 100;
    let charged = eventually(
        "a charge goes through again",
        Duration::from_secs(10),
        || {
            recovered_cycle += 1;
            let this_cycle = recovered_cycle;
            let harness = &harness;
            async move {
                harness
                    .charge(3, this_cycle, ORIGIN, USER, 1_000, 1)
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert_eq!(charged.outcome(), pb::ChargeOutcome::Charged);
    eventually("the breaker closes", Duration::from_secs(10), || {
        recovered_cycle += 1;
        let this_cycle = recovered_cycle;
        let harness = &harness;
        async move {
            let _ = harness.charge(3, this_cycle, ORIGIN, USER, 1_000, 1).await;
            (breaker_state(&harness.metrics().await) == Some(0.0)).then_some(())
        }
    })
    .await;
    harness.stop().await;
}
