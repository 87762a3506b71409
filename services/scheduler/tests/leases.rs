//! Two replicas billing one database: leases make every job charged exactly once, even when
//! one replica dies in the middle of a run. PostgreSQL when `PILLIVERY_TEST_POSTGRES_URL` names
//! a server (`FOR UPDATE SKIP LOCKED`), else SQLite (the single-statement claim).
//!
//! A replica here is a [`scheduler::billing::Biller`] — what each scheduler process runs — so
//! "killing" one is aborting the task its run lives in: every future of the run is dropped
//! wherever it stood (before a charge, between the charge and the renewal record, …), which is
//! what a crash does to the process, and its leases stay behind in the database.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_platform::time::SharedClock;
use pillivery_testkit::{Backend, TestDatabase, eventually};
use scheduler::domain::JobStatus;
use scheduler::store::{Migrator, SchedulerStore};

/// The scale: ten thousand due jobs.
const JOBS: i64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_run_leaves_no_job_charged_twice_or_never() {
    let backend = Backend::postgres().unwrap_or(Backend::Sqlite);
    let database = TestDatabase::fresh(&backend).await;
    let mut config = database.config.clone();
    config.max_connections = 16;
    let connection = pillivery_platform::db::connect_and_migrate::<Migrator>(&config)
        .await
        .unwrap();
    let store = SchedulerStore::new(connection);
    let world = World::start().await;
    {
        let mut books = world.payment.books.lock().unwrap();
        books.latency = Duration::from_millis(2);
        books.fault_percent = 20;
        books.lost_answer_percent = 10;
    }
    let due = day("2026-03-01");
    for id in 1..=JOBS {
        world.subscribe(&store, id, 30, due).await;
    }
    let clock = manual_clock();
    let shared: SharedClock = Arc::new(clock.clone());
    let tasks = Tasks::new();
    let shutdown = Shutdown::new();
    let doomed = biller(
        &world,
        &store,
        shared.clone(),
        settings(32),
        &tasks,
        &shutdown,
    );
    let survivor = biller(
        &world,
        &store,
        shared.clone(),
        settings(32),
        &tasks,
        &shutdown,
    );

    let doomed_run = tokio::spawn(async move { doomed.run(due).await });
    let survivor_run = {
        let survivor = survivor.clone();
        tokio::spawn(async move { survivor.run(due).await })
    };
    let charged_at_kill = eventually(
        "a third of the jobs charged",
        Duration::from_secs(60),
        || {
            let charged = world.payment.ledger().len() as i64;
            async move { (charged >= JOBS / 3).then_some(charged) }
        },
    )
    .await;
    doomed_run.abort();
    assert!(
        doomed_run.await.unwrap_err().is_cancelled(),
        "killed mid-run"
    );
    let first = survivor_run.await.unwrap().unwrap();
    assert!(first.charged > 0, "both replicas billed: {first:?}");
    assert!(charged_at_kill < JOBS, "killed before the end");

    // The dead replica's leases lapse; the survivor takes its jobs over. Faults that outlived
    // the immediate retry are retried on the following days.
    clock.advance(chrono::Duration::seconds(61));
    let mut as_of = due;
    for _ in 0..4 {
        survivor.run(as_of).await.unwrap();
        as_of = as_of.succ_opt().unwrap();
    }

    let ledger = world.payment.ledger();
    assert_eq!(ledger.len() as i64, JOBS, "every job charged");
    assert!(
        ledger.keys().all(|(_, cycle)| *cycle == 1),
        "and only its first cycle"
    );
    let renewals = world.order.renewals();
    assert_eq!(renewals.len() as i64, JOBS, "one renewal recorded per job");
    let jobs = store.all_jobs().await.unwrap();
    assert_eq!(jobs.len() as i64, JOBS);
    for record in &jobs {
        let job = &record.job;
        assert_eq!(
            (job.status, job.cycle, job.next_billing_date),
            (JobStatus::Active, 1, day("2026-03-31")),
            "job {}",
            job.subscription_id
        );
        assert_eq!(
            record.lease_owner, None,
            "released: job {}",
            job.subscription_id
        );
    }
    // A paid cycle was asked for again only where its answer was lost, or where the killed
    // replica had charged and not yet recorded (at most its 32 jobs in flight): never because
    // two replicas held one job.
    let (repeats, lost) = {
        let books = world.payment.books.lock().unwrap();
        (books.repeats_after_charged, books.lost_answers)
    };
    assert!(
        repeats <= lost + 32,
        "{repeats} repeats, {lost} lost answers"
    );
    shutdown.trigger();
    tasks.close();
    tasks.wait().await;
    world.shutdown.trigger();
    store.connection().clone().close().await.unwrap();
    database.remove().await;
}
