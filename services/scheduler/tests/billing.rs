//! Billing through the scheduler's gRPC API on a random port, against in-test order and payment
//! services (see `common`): admin runs as of a date, catch-up, the retry ladder, faults,
//! cancellations, and the internal job RPCs.

mod common;

use common::*;
use pillivery_platform::auth::Role;
use pillivery_proto::order::SubscriptionStatus;
use pillivery_proto::scheduler as pb;
use pillivery_proto::scheduler::scheduler_admin_service_client::SchedulerAdminServiceClient;
use pillivery_proto::scheduler::scheduler_internal_service_client::SchedulerInternalServiceClient;
use pillivery_testkit::{Backend, TestDatabase};
use scheduler::domain::JobStatus;
use tonic::Code;

struct Harness {
    world: World,
    scheduler: RunningScheduler,
    _database: TestDatabase,
}

impl Harness {
    async fn start() -> Harness {
        let database = TestDatabase::fresh(&Backend::Sqlite).await;
        let world = World::start().await;
        let scheduler = RunningScheduler::start(&database, &world).await;
        Harness {
            world,
            scheduler,
            _database: database,
        }
    }

    async fn run(&self, as_of: &str) -> pb::BillingRun {
        let token = self.scheduler.token(Role::Admin);
        SchedulerAdminServiceClient::new(self.scheduler.channel.clone())
            .run_billing(authorized(
                pb::RunBillingRequest {
                    as_of: as_of.into(),
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn job(&self, id: i64) -> scheduler::domain::Job {
        self.scheduler.store.get(id).await.unwrap().unwrap().job
    }

    async fn stop(self) {
        self.scheduler.stop().await;
        self.world.shutdown.trigger();
    }
}

fn counts(run: &pb::BillingRun) -> [i64; 6] {
    [
        run.charged,
        run.declined,
        run.retried,
        run.suspended,
        run.faults,
        run.deferred,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_need_an_admin_and_a_real_date() {
    let harness = Harness::start().await;
    let mut admin = SchedulerAdminServiceClient::new(harness.scheduler.channel.clone());
    let request = || pb::RunBillingRequest {
        as_of: "2026-01-05".into(),
    };
    let anonymous = admin.run_billing(request()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let user = harness.scheduler.token(Role::User);
    let forbidden = admin
        .run_billing(authorized(request(), &user))
        .await
        .unwrap_err();
    assert_error(forbidden, Code::PermissionDenied, "FORBIDDEN");
    let token = harness.scheduler.token(Role::Admin);
    for bad in ["2026-1-05", "2026-02-30", "", "yesterday"] {
        let status = admin
            .run_billing(authorized(
                pb::RunBillingRequest { as_of: bad.into() },
                &token,
            ))
            .await
            .unwrap_err();
        let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(error.field_errors.len(), 1, "{bad}");
        assert_eq!(error.field_errors[0].field, "asOf");
    }
    let empty = harness.run("2026-01-05").await;
    assert_eq!(
        (empty.as_of.as_str(), counts(&empty)),
        ("2026-01-05", [0; 6])
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missed_cycles_are_caught_up_each_on_its_due_date_and_only_once() {
    let harness = Harness::start().await;
    let store = &harness.scheduler.store;
    harness
        .world
        .subscribe(store, 1, 30, day("2026-01-01"))
        .await;
    harness
        .world
        .subscribe(store, 2, 60, day("2026-02-28"))
        .await;
    harness
        .world
        .subscribe(store, 3, 30, day("2026-03-06"))
        .await;
    // Nothing ran for two months: cycles due 01-01, 01-31, 03-02 of subscription 1 and 02-28 of
    // subscription 2 are all billed; subscription 3 is not due yet.
    let run = harness.run("2026-03-05").await;
    assert_eq!(counts(&run), [4, 0, 0, 0, 0, 0]);
    let mut renewals = harness.world.order.renewals();
    renewals.sort();
    assert_eq!(
        renewals,
        vec![
            (1, 1, day("2026-01-01")),
            (1, 2, day("2026-01-31")),
            (1, 3, day("2026-03-02")),
            (2, 1, day("2026-02-28")),
        ]
    );
    let ledger = harness.world.payment.ledger();
    assert_eq!(ledger.len(), 4);
    assert_eq!(ledger[&(1, 1)], 2 * 5_001, "unit price × quantity");
    let job = harness.job(1).await;
    assert_eq!(
        (
            job.cycle,
            job.last_billed_date,
            job.next_billing_date,
            job.status
        ),
        (
            3,
            Some(day("2026-03-02")),
            day("2026-04-01"),
            JobStatus::Active
        )
    );
    assert_eq!(
        job.item_name, "item 1001",
        "the name comes from the order service"
    );
    // Again as of the same day: nothing is due any more.
    assert_eq!(counts(&harness.run("2026-03-05").await), [0; 6]);
    // A leap day: 2028-02-29 + 30 days is 2028-03-30.
    harness
        .world
        .subscribe(store, 4, 30, day("2028-02-29"))
        .await;
    let run = harness.run("2028-02-29").await;
    // Each subscription's cycles from its next date up to the run's date, counted by hand.
    let due_until =
        |next: &str, period: i64| (day("2028-02-29") - day(next)).num_days() / period + 1;
    let expected =
        due_until("2026-04-01", 30) + due_until("2026-04-29", 60) + due_until("2026-03-06", 30) + 1;
    assert_eq!((expected, run.charged), (24 + 12 + 25 + 1, expected));
    assert_eq!(harness.job(4).await.next_billing_date, day("2028-03-30"));
    // Every cycle was charged exactly once, and calls were never repeated for a paid cycle.
    let ledger = harness.world.payment.ledger();
    assert_eq!(ledger.len() as i64, 4 + run.charged);
    assert_eq!(
        harness
            .world
            .payment
            .books
            .lock()
            .unwrap()
            .repeats_after_charged,
        0
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declines_climb_the_ladder_to_suspended() {
    let harness = Harness::start().await;
    harness
        .world
        .subscribe(&harness.scheduler.store, 7, 30, day("2026-03-01"))
        .await;
    harness.world.payment.decline(7);
    let steps = [
        (
            "2026-03-01",
            [0, 1, 1, 0, 0, 0],
            JobStatus::PastDue,
            Some("2026-03-02"),
        ),
        // The same day again: the retry waits for its date.
        ("2026-03-01", [0; 6], JobStatus::PastDue, Some("2026-03-02")),
        (
            "2026-03-02",
            [0, 1, 1, 0, 0, 0],
            JobStatus::PastDue,
            Some("2026-03-03"),
        ),
        (
            "2026-03-03",
            [0, 1, 1, 0, 0, 0],
            JobStatus::PastDue,
            Some("2026-03-04"),
        ),
        ("2026-03-04", [0, 1, 0, 1, 0, 0], JobStatus::Suspended, None),
        ("2026-04-30", [0; 6], JobStatus::Suspended, None),
    ];
    for (as_of, expected, status, retry_on) in steps {
        let run = harness.run(as_of).await;
        assert_eq!(counts(&run), expected, "as of {as_of}");
        let job = harness.job(7).await;
        assert_eq!(
            (job.status, job.next_attempt_date),
            (status, retry_on.map(day)),
            "as of {as_of}"
        );
    }
    assert_eq!(
        harness.world.order.failures(),
        vec![
            (7, 1, 1, false),
            (7, 1, 2, false),
            (7, 1, 3, false),
            (7, 1, 4, true)
        ]
    );
    // Each day's retry was a new attempt number, so the payment service sent it to the PG again.
    let attempts: Vec<i32> = harness
        .world
        .payment
        .calls()
        .iter()
        .map(|call| call.2)
        .collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    assert!(harness.world.payment.ledger().is_empty());
    let history = harness.scheduler.store.attempts(7).await.unwrap();
    assert_eq!(history.len(), 4);
    assert!(
        history
            .iter()
            .all(|attempt| attempt.outcome == "DECLINED" && attempt.reason.contains("-782"))
    );
    assert_eq!(
        harness.world.order.subscription(7).status,
        SubscriptionStatus::Suspended
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fault_is_retried_at_once_then_daily_and_a_success_reactivates() {
    let harness = Harness::start().await;
    let store = &harness.scheduler.store;
    harness
        .world
        .subscribe(store, 1, 30, day("2026-03-01"))
        .await;
    harness
        .world
        .subscribe(store, 2, 30, day("2026-03-01"))
        .await;
    // 1: one fault, retried at once (the payment client itself retries UNAVAILABLE twice: the
    // charge is safe to repeat). 2: the fault outlasts the client's retries and the
    // scheduler's immediate retry (2 × 3 calls).
    harness.world.payment.fail_next(1, 1);
    harness.world.payment.fail_next(2, 6);
    let run = harness.run("2026-03-01").await;
    assert_eq!(counts(&run), [1, 0, 1, 0, 1, 0]);
    assert_eq!(harness.job(1).await.cycle, 1);
    let job = harness.job(2).await;
    assert_eq!(
        (job.status, job.failed_attempts, job.next_attempt_date),
        (JobStatus::PastDue, 1, Some(day("2026-03-02")))
    );
    // The next day the payment service works again: charged, ACTIVE, billed on its due date.
    let run = harness.run("2026-03-02").await;
    assert_eq!(counts(&run), [1, 0, 0, 0, 0, 0]);
    let job = harness.job(2).await;
    assert_eq!(
        (
            job.status,
            job.failed_attempts,
            job.next_attempt_date,
            job.last_billed_date
        ),
        (JobStatus::Active, 0, None, Some(day("2026-03-01")))
    );
    assert_eq!(job.next_billing_date, day("2026-03-31"));
    let history = store.attempts(2).await.unwrap();
    let outcomes: Vec<(&str, i32)> = history
        .iter()
        .map(|a| (a.outcome.as_str(), a.attempt))
        .collect();
    assert_eq!(outcomes, vec![("FAULT", 1), ("FAULT", 1), ("CHARGED", 2)]);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_subscription_is_never_charged() {
    let harness = Harness::start().await;
    let store = &harness.scheduler.store;
    harness
        .world
        .subscribe(store, 1, 30, day("2026-03-01"))
        .await;
    harness
        .world
        .subscribe(store, 2, 30, day("2026-03-01"))
        .await;
    // Cancelled at the order service before the scheduler heard of it.
    harness
        .world
        .order
        .set_status(1, SubscriptionStatus::Canceled);
    let run = harness.run("2026-06-01").await;
    assert_eq!(run.charged, 4, "only subscription 2, four cycles");
    assert_eq!(harness.job(1).await.status, JobStatus::Canceled);
    assert!(
        harness
            .world
            .payment
            .ledger()
            .keys()
            .all(|(id, _)| *id == 2)
    );
    // Cancelled through the internal RPC: never charged again either.
    let mut internal = SchedulerInternalServiceClient::new(harness.scheduler.channel.clone());
    let cancelled = internal
        .cancel_job(pb::CancelJobRequest { subscription_id: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status(), pb::JobStatus::Canceled);
    assert_eq!(harness.run("2027-06-01").await.charged, 0);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_created_read_rescheduled_and_cancelled() {
    let harness = Harness::start().await;
    let mut internal = SchedulerInternalServiceClient::new(harness.scheduler.channel.clone());
    let request = pb::CreateJobRequest {
        subscription_id: 5,
        user_id: 50,
        item_id: 500,
        item_name: "오메가3".into(),
        quantity: 1,
        unit_price: 20_000,
        period_days: 30,
        origin_order_id: 55,
        next_billing_date: "2026-03-01".into(),
        cycle: 0,
        last_billed_date: String::new(),
    };
    let created = internal
        .create_job(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    let job = created.job.unwrap();
    assert_eq!(
        (job.status(), job.next_billing_date.as_str()),
        (pb::JobStatus::Active, "2026-03-01")
    );
    assert_eq!(job.last_billed_date, None);
    // A repeat answers the job unchanged.
    let mut changed = request.clone();
    changed.quantity = 9;
    let again = internal.create_job(changed).await.unwrap().into_inner();
    assert!(!again.created);
    assert_eq!(again.job.unwrap().quantity, 1);
    // Every invalid field at once.
    let status = internal
        .create_job(pb::CreateJobRequest {
            quantity: 0,
            period_days: 0,
            next_billing_date: "2026-3-1".into(),
            last_billed_date: "x".into(),
            ..request.clone()
        })
        .await
        .unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    let fields: Vec<&str> = error
        .field_errors
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(
        fields,
        vec![
            "quantity",
            "periodDays",
            "nextBillingDate",
            "lastBilledDate"
        ]
    );
    // Rescheduled into the past: due at the next run.
    let moved = internal
        .reschedule_job(pb::RescheduleJobRequest {
            subscription_id: 5,
            next_billing_date: "2026-02-01".into(),
            period_days: Some(60),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (moved.next_billing_date.as_str(), moved.period_days),
        ("2026-02-01", 60)
    );
    let read = internal
        .get_job(pb::GetJobRequest { subscription_id: 5 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.next_billing_date, "2026-02-01");
    let missing = internal
        .get_job(pb::GetJobRequest {
            subscription_id: 404,
        })
        .await
        .unwrap_err();
    assert_error(missing, Code::NotFound, "BILLING_JOB_NOT_FOUND");
    internal
        .cancel_job(pb::CancelJobRequest { subscription_id: 5 })
        .await
        .unwrap();
    let ended = internal
        .reschedule_job(pb::RescheduleJobRequest {
            subscription_id: 5,
            next_billing_date: "2026-02-01".into(),
            period_days: None,
        })
        .await
        .unwrap_err();
    assert_error(ended, Code::FailedPrecondition, "BILLING_JOB_ENDED");
    // Cancelling twice is harmless.
    let twice = internal
        .cancel_job(pb::CancelJobRequest { subscription_id: 5 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(twice.status(), pb::JobStatus::Canceled);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_order_service_defers_without_charging() {
    let harness = Harness::start().await;
    harness
        .world
        .subscribe(&harness.scheduler.store, 1, 30, day("2026-03-01"))
        .await;
    // The outside world goes away.
    harness.world.shutdown.trigger();
    let run = harness.run("2026-03-01").await;
    assert_eq!(counts(&run), [0, 0, 0, 0, 0, 1]);
    let stored = harness.scheduler.store.get(1).await.unwrap().unwrap();
    assert_eq!(stored.job.failed_attempts, 0, "not an attempt");
    assert!(
        stored.lease_owner.is_some(),
        "kept leased until the lease lapses"
    );
    // Within the lease, another run leaves it alone (it would only be deferred again).
    assert_eq!(counts(&harness.run("2026-03-01").await), [0; 6]);
    harness.stop().await;
}
