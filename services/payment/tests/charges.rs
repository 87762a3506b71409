//! `ChargeSubscription` exactly once per (subscription, cycle), against the sandbox PG with
//! injected faults; the sandbox's ledger is the judge of how often money moved.
//!
//! Every scenario runs on SQLite, and on PostgreSQL / MySQL when configured.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;

use common::{Backend, Harness, Setup, assert_error};
use futures::StreamExt;
use pillivery_platform::resilience::EdgePolicy;
use pillivery_proto::payment as pb;
use pillivery_sandbox_pg::{Endpoint, EndpointSet, EntryKind, FaultConfig, LedgerFilter};
use tonic::Code;

const USER: i64 = 31;
const ORIGIN: i64 = 900;
const AMOUNT: i64 = 12_900;

async fn run<F, Fut>(backend: Option<Backend>, test: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    test(backend).await;
}

/// Faults on subscription charges only, so the first payment that issues the SID goes through.
fn charge_faults(faults: FaultConfig) -> FaultConfig {
    FaultConfig {
        endpoints: EndpointSet::of(&[Endpoint::Subscription]),
        ..faults
    }
}

/// A short PG deadline (the sandbox holds timed-out calls longer) so timeouts are quick.
fn fast_edge() -> EdgePolicy {
    EdgePolicy {
        max_concurrent: 256,
        default_deadline_ms: 400,
        max_retries: 2,
        retry_base_ms: 5,
        retry_max_ms: 20,
        ..EdgePolicy::default()
    }
}

/// Pays the origin order with the subscription contract: the sandbox issues its SID.
async fn subscribe(harness: &Harness) {
    harness.orders.add(ORIGIN, USER, 30_000, true);
    harness.pay(USER, ORIGIN).await;
}

/// What the scheduler does: the same identity again after every UNAVAILABLE, until an answer.
async fn charge_until_answered(
    harness: &Harness,
    subscription_id: i64,
    cycle: i32,
) -> (pb::ChargeSubscriptionResponse, u32) {
    let mut faults = 0;
    // Bounded by time, not by count: while the other caller holds the charge's lease (up to a
    // held PG timeout), every attempt answers CHARGE_IN_PROGRESS at once, and how many fit in
    // that window depends on the machine. Like the scheduler, back off a little between tries.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match harness
            .charge(subscription_id, cycle, ORIGIN, USER, AMOUNT, 1)
            .await
        {
            Ok(answer) => return (answer, faults),
            Err(status) if status.code() == Code::Unavailable => {
                faults += 1;
                assert!(
                    std::time::Instant::now() < give_up,
                    "no answer for {subscription_id}/{cycle} after {faults} tries: {status:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(status) => panic!("{subscription_id}/{cycle}: {status:?}"),
        }
    }
}

/// 1 000 charges (100 subscriptions × 10 cycles), each asked by two callers at once, with 20 %
/// of PG calls failing: 10 % 5xx, 5 % timeouts before the PG did anything, 5 % timeouts after it
/// charged. Every charge ends CHARGED and the ledger holds exactly one charge per identity.
async fn a_thousand_charges_with_faults_move_money_once_each(backend: Backend) {
    let harness = Harness::start_with(
        &backend,
        Setup {
            edge: fast_edge(),
            database_connections: 16,
            ..Setup::default()
        },
    )
    .await;
    subscribe(&harness).await;
    harness
        .sandbox
        .set_faults(charge_faults(FaultConfig {
            server_error_rate: 0.10,
            timeout_rate: 0.05,
            timeout_after_commit_rate: 0.05,
            timeout_hold_ms: 1_500,
            seed: Some(20_251_128),
            ..FaultConfig::default()
        }))
        .unwrap();
    let identities: Vec<(i64, i32)> = (1..=100)
        .flat_map(|subscription| (1..=10).map(move |cycle| (subscription, cycle)))
        .collect();
    // Each identity twice: two scheduler replicas racing for the same charge.
    let calls = identities.iter().chain(identities.iter()).copied();
    let answers: Vec<((i64, i32), pb::ChargeSubscriptionResponse, u32)> =
        futures::stream::iter(calls)
            .map(|(subscription, cycle)| {
                let harness = &harness;
                async move {
                    let (answer, faults) =
                        charge_until_answered(harness, subscription, cycle).await;
                    ((subscription, cycle), answer, faults)
                }
            })
            .buffer_unordered(48)
            .collect()
            .await;
    let retried: u32 = answers.iter().map(|(_, _, faults)| faults).sum();
    assert!(retried > 0, "the faults must have been felt");
    let mut tids: HashMap<(i64, i32), String> = HashMap::new();
    for (identity, answer, _) in &answers {
        assert_eq!(answer.outcome(), pb::ChargeOutcome::Charged, "{identity:?}");
        let first = tids.entry(*identity).or_insert_with(|| answer.tid.clone());
        assert_eq!(
            first, &answer.tid,
            "both callers see the one charge of {identity:?}"
        );
    }
    let ledger = harness.sandbox.ledger(&LedgerFilter {
        kind: Some(EntryKind::Charge),
        ..LedgerFilter::default()
    });
    let mut per_identity: HashMap<String, Vec<String>> = HashMap::new();
    for entry in ledger
        .entries
        .iter()
        .filter(|entry| entry.partner_order_id.starts_with("sub-"))
    {
        per_identity
            .entry(entry.partner_order_id.clone())
            .or_default()
            .push(entry.tid.clone());
    }
    assert_eq!(per_identity.len(), 1_000);
    for ((subscription, cycle), tid) in &tids {
        let charges = &per_identity[&format!("sub-{subscription}-c{cycle}")];
        assert_eq!(charges, &vec![tid.clone()], "{subscription}/{cycle}");
    }
    println!(
        "1000 charges, {} calls, {retried} UNAVAILABLE answers retried, {} PG charge calls",
        answers.len(),
        harness.provider.charge_calls.load(Ordering::SeqCst)
    );
    harness.stop().await;
}

/// The PG charges, then the answer never comes: the charge is unknown, resolved by the next
/// call with the same partner_order_id, and the ledger still shows one charge.
async fn a_timeout_after_the_pg_charged_is_resolved_without_a_second_charge(backend: Backend) {
    let harness = Harness::start_with(
        &backend,
        Setup {
            edge: fast_edge(),
            ..Setup::default()
        },
    )
    .await;
    subscribe(&harness).await;
    harness
        .sandbox
        .set_faults(charge_faults(FaultConfig {
            timeout_after_commit_rate: 1.0,
            timeout_hold_ms: 1_500,
            ..FaultConfig::default()
        }))
        .unwrap();
    for _ in 0..3 {
        let unknown = harness
            .charge(41, 1, ORIGIN, USER, AMOUNT, 1)
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::Unavailable, "{unknown:?}");
        assert_eq!(harness.ledger_of("sub-41-c1").charges, 1);
    }
    harness.sandbox.set_faults(FaultConfig::default()).unwrap();
    let resolved = harness
        .charge(41, 1, ORIGIN, USER, AMOUNT, 1)
        .await
        .unwrap();
    assert_eq!(resolved.outcome(), pb::ChargeOutcome::Charged);
    let ledger = harness.ledger_of("sub-41-c1");
    assert_eq!(ledger.charges, 1);
    assert_eq!(ledger.entries[0].tid, resolved.tid);
    // Recorded: a repeat answers without the PG.
    let calls = harness.provider.charge_calls.load(Ordering::SeqCst);
    let replay = harness
        .charge(41, 1, ORIGIN, USER, AMOUNT, 1)
        .await
        .unwrap();
    assert_eq!(replay, resolved);
    assert_eq!(harness.provider.charge_calls.load(Ordering::SeqCst), calls);
    harness.stop().await;
}

/// A decline is an answer, recorded and replayed; only a later attempt sends it again.
async fn declines_are_answered_not_retried(backend: Backend) {
    let harness = Harness::start(&backend).await;
    subscribe(&harness).await;
    harness
        .sandbox
        .set_faults(charge_faults(FaultConfig {
            decline_rate: 1.0,
            ..FaultConfig::default()
        }))
        .unwrap();
    let declined = harness
        .charge(51, 1, ORIGIN, USER, AMOUNT, 1)
        .await
        .unwrap();
    assert_eq!(declined.outcome(), pb::ChargeOutcome::Declined);
    assert_eq!(declined.decline_code, "-782");
    assert!(!declined.decline_message.is_empty());
    assert_eq!(harness.provider.charge_calls.load(Ordering::SeqCst), 1);
    // The same attempt again (a scheduler retry after a lost answer): the recorded decline.
    harness.sandbox.set_faults(FaultConfig::default()).unwrap();
    let replay = harness
        .charge(51, 1, ORIGIN, USER, AMOUNT, 1)
        .await
        .unwrap();
    assert_eq!(replay, declined);
    assert_eq!(harness.provider.charge_calls.load(Ordering::SeqCst), 1);
    assert_eq!(harness.ledger_of("sub-51-c1").charges, 0);
    // The scheduler's next day: attempt 2 goes to the PG again and succeeds.
    let charged = harness
        .charge(51, 1, ORIGIN, USER, AMOUNT, 2)
        .await
        .unwrap();
    assert_eq!(charged.outcome(), pb::ChargeOutcome::Charged);
    assert_eq!(harness.provider.charge_calls.load(Ordering::SeqCst), 2);
    assert_eq!(harness.ledger_of("sub-51-c1").charges, 1);
    // Other values for the same identity are refused.
    let mismatch = harness
        .charge(51, 1, ORIGIN, USER, AMOUNT + 1, 2)
        .await
        .unwrap_err();
    assert_error(mismatch, Code::FailedPrecondition, "CHARGE_MISMATCH");
    harness.stop().await;
}

/// Twenty callers at once for one charge, the PG slow: one of them sends, the others wait
/// their turn (CHARGE_IN_PROGRESS) or read the result.
async fn concurrent_callers_never_both_send(backend: Backend) {
    let harness = Harness::start(&backend).await;
    subscribe(&harness).await;
    harness
        .sandbox
        .set_faults(charge_faults(FaultConfig {
            latency_min_ms: 300,
            ..FaultConfig::default()
        }))
        .unwrap();
    let answers =
        futures::future::join_all((0..20).map(|_| harness.charge(61, 1, ORIGIN, USER, AMOUNT, 1)))
            .await;
    let mut tids = Vec::new();
    for answer in answers {
        match answer {
            Ok(answer) => tids.push(answer.tid),
            Err(status) => {
                assert_error(status, Code::Unavailable, "CHARGE_IN_PROGRESS");
            }
        }
    }
    assert_eq!(harness.provider.charge_calls.load(Ordering::SeqCst), 1);
    let last = harness
        .charge(61, 1, ORIGIN, USER, AMOUNT, 1)
        .await
        .unwrap();
    assert!(tids.iter().all(|tid| tid == &last.tid), "{tids:?}");
    assert_eq!(harness.ledger_of("sub-61-c1").charges, 1);
    harness.stop().await;
}

on_every_backend!(
    a_thousand_charges_with_faults_move_money_once_each,
    a_timeout_after_the_pg_charged_is_resolved_without_a_second_charge,
    declines_are_answered_not_retried,
    concurrent_callers_never_both_send,
);
