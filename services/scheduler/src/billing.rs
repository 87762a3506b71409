//! Billing runs: claim due jobs, charge them, record what happened.
//!
//! A run as of business date `D` (an admin `asOf` call, or the loop with `D` = today once the
//! billing hour has come) repeats until no job is left to claim:
//!
//! 1. **claim** a batch of due jobs under a lease (`store::SchedulerStore::claim`), so no other
//!    replica or run takes them meanwhile;
//! 2. **process** each claimed job, `max_in_flight` at a time (`buffer_unordered`):
//!    read the subscription from the order service (the truth: a cancelled subscription is
//!    never charged, a renewal recorded before a crash is not charged again), charge cycle
//!    `cycle + 1` for `unit_price × quantity` with its `(subscription, cycle, attempt)` identity,
//!    then tell the order service (renewal order and new dates, or the failure) and only then
//!    write the job and release its lease;
//! 3. a job still due after a charge (days or cycles missed while nothing ran) is charged again
//!    in the same claim, its lease extended: catch-up, one cycle at a time, each billed on its
//!    own due date.
//!
//! Every processed job leaves the due set for `D` (charged ahead, retried on a later day,
//! finished) or keeps its lease until it lapses (deferred: a neighbour unreachable), so a run
//! always ends. Failures follow [`RetryPolicy`]; see `docs/scheduler.md` for the counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use pillivery_platform::shutdown::Shutdown;
use pillivery_platform::time::{BusinessCalendar, SharedClock};

use crate::clients::{CallFailure, ChargeAnswer, ChargeRequest, Neighbours};
use crate::domain::{Job, JobStatus, Ladder, RetryPolicy, as_of_for, lag_days};
use crate::store::{Attempt, AttemptOutcome, SchedulerStore, StoreError};

/// What one run did; `docs/scheduler.md` defines each count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub charged: u64,
    pub declined: u64,
    pub retried: u64,
    pub suspended: u64,
    pub faults: u64,
    pub deferred: u64,
}

impl RunCounts {
    fn add(&mut self, other: RunCounts) {
        self.charged += other.charged;
        self.declined += other.declined;
        self.retried += other.retried;
        self.suspended += other.suspended;
        self.faults += other.faults;
        self.deferred += other.deferred;
    }
}

/// How runs are paced; from the configuration.
#[derive(Clone, Debug)]
pub struct BillingSettings {
    pub policy: RetryPolicy,
    pub lease: Duration,
    pub max_in_flight: usize,
}

/// Runs billing for one replica. Cheap to share (`Arc`): the loop and admin calls use the same.
pub struct Biller {
    store: SchedulerStore,
    neighbours: Neighbours,
    clock: SharedClock,
    settings: BillingSettings,
    /// This replica's name in lease tokens (unique per process start).
    replica: String,
    claims: AtomicU64,
    shutdown: Shutdown,
}

/// How a charge ended, after any immediate retries.
enum Charge {
    Charged(chrono::DateTime<Utc>),
    Failed {
        declined: bool,
        reason: String,
    },
    /// Not attempted (or not knowably): leave the job leased and come back later.
    Deferred(String),
}

impl Biller {
    pub fn new(
        store: SchedulerStore,
        neighbours: Neighbours,
        clock: SharedClock,
        settings: BillingSettings,
        shutdown: Shutdown,
    ) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Biller {
            store,
            neighbours,
            clock,
            settings,
            replica: format!("scheduler-{}", &suffix[..12]),
            claims: AtomicU64::new(0),
            shutdown,
        }
    }

    pub fn store(&self) -> &SchedulerStore {
        &self.store
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn lease_until_ms(&self) -> i64 {
        let lease = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        self.now_ms().saturating_add(lease)
    }

    /// Bills every job due as of `as_of` until none is left to claim (or the service stops:
    /// no new claim is made then, and the jobs in flight finish).
    pub async fn run(self: &Arc<Self>, as_of: NaiveDate) -> Result<RunCounts, StoreError> {
        let batch = self.settings.max_in_flight as u64;
        // The combinators own `Arc` clones, so their futures are `'static` and the whole run
        // stays `Send` for tonic (closures borrowing `self` defeat higher-ranked inference).
        let claimer = Arc::clone(self);
        let claims = futures::stream::unfold(false, move |failed| {
            let biller = Arc::clone(&claimer);
            async move {
                if failed || biller.shutdown.is_triggered() {
                    return None;
                }
                let number = biller.claims.fetch_add(1, Ordering::Relaxed);
                let token: Arc<str> = format!("{}#{number}", biller.replica).into();
                let claimed = biller
                    .store
                    .claim(
                        as_of,
                        &token,
                        biller.now_ms(),
                        biller.lease_until_ms(),
                        batch,
                    )
                    .await;
                match claimed {
                    Ok(jobs) if jobs.is_empty() => None,
                    Ok(jobs) => {
                        metrics::counter!("scheduler_jobs_claimed_total")
                            .increment(jobs.len() as u64);
                        let items: Vec<Result<(Arc<str>, Job), StoreError>> = jobs
                            .into_iter()
                            .map(|job| Ok((token.clone(), job)))
                            .collect();
                        Some((futures::stream::iter(items), false))
                    }
                    Err(error) => Some((futures::stream::iter(vec![Err(error)]), true)),
                }
            }
        });
        let processor = Arc::clone(self);
        let outcomes = claims
            .flatten()
            .map(move |claimed| {
                let biller = Arc::clone(&processor);
                async move {
                    let (token, job) = claimed?;
                    Ok::<_, StoreError>(biller.process(as_of, job, &token).await)
                }
            })
            .buffer_unordered(self.settings.max_in_flight);
        let mut outcomes = std::pin::pin!(outcomes);
        let mut counts = RunCounts::default();
        let mut failure = None;
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(job_counts) => counts.add(job_counts),
                Err(error) => failure = Some(error),
            }
        }
        if let Some(error) = failure {
            tracing::error!(%error, %as_of, "billing run stopped: claiming failed");
            return Err(error);
        }
        tracing::info!(
            %as_of,
            charged = counts.charged,
            declined = counts.declined,
            retried = counts.retried,
            suspended = counts.suspended,
            faults = counts.faults,
            deferred = counts.deferred,
            "billing run finished"
        );
        Ok(counts)
    }

    /// One claimed job, until it is no longer due as of `as_of` or must wait.
    async fn process(&self, as_of: NaiveDate, mut job: Job, token: &str) -> RunCounts {
        let mut counts = RunCounts::default();
        let subscription_id = job.subscription_id;
        loop {
            match self.neighbours.subscription(subscription_id).await {
                Ok(Some(snapshot)) => job.reconcile(&snapshot),
                Ok(None) => {
                    tracing::warn!(
                        subscription_id,
                        "the order service has no such subscription; job cancelled"
                    );
                    job.set_ladder(Ladder {
                        status: JobStatus::Canceled,
                        failed_attempts: job.failed_attempts,
                        next_attempt_date: None,
                    });
                    self.save(&job, token, None).await;
                    return counts;
                }
                Err(failure) => {
                    self.defer(
                        subscription_id,
                        "reading the subscription",
                        &failure,
                        &mut counts,
                    );
                    return counts;
                }
            }
            if !job.is_due(as_of) {
                self.save(&job, token, None).await;
                return counts;
            }
            let due = job.next_billing_date;
            let cycle = job.charge_cycle();
            let attempt = job.failed_attempts.saturating_add(1);
            let charge = match job.amount() {
                Some(amount) => self.charge(&job, cycle, attempt, amount, as_of).await,
                None => Charge::Failed {
                    declined: true,
                    reason: format!(
                        "no valid amount: unit price {} × quantity {}",
                        job.unit_price, job.quantity
                    ),
                },
            };
            match charge {
                Charge::Deferred(reason) => {
                    let failure = CallFailure::NotSent(reason);
                    self.defer(subscription_id, "charging", &failure, &mut counts);
                    return counts;
                }
                Charge::Charged(charged_at) => {
                    counts.charged += 1;
                    metrics::counter!("scheduler_charges_total", "outcome" => "charged")
                        .increment(1);
                    let amount = job.amount().unwrap_or(0);
                    let recorded = self
                        .neighbours
                        .record_renewal(subscription_id, cycle, due, amount, charged_at)
                        .await;
                    let after = match recorded {
                        Ok(after) => after,
                        Err(failure) => {
                            // Charged, not recorded: the lease lapses, the next claim charges the
                            // same cycle again (the payment service answers the recorded
                            // charge, no money moves) and records it then.
                            if matches!(failure, CallFailure::Refused { .. }) {
                                tracing::error!(
                                    subscription_id, cycle, %failure,
                                    "the order service refused a charged renewal"
                                );
                            }
                            self.defer(
                                subscription_id,
                                "recording the renewal",
                                &failure,
                                &mut counts,
                            );
                            return counts;
                        }
                    };
                    if !job.record_renewal(cycle, due, after.as_ref()) {
                        self.save(&job, token, None).await;
                        return counts;
                    }
                    if job.is_due(as_of) {
                        // Catch-up: the next cycle is due too; keep the job and extend the lease.
                        if !self.save(&job, token, Some(self.lease_until_ms())).await {
                            return counts;
                        }
                        continue;
                    }
                    self.save(&job, token, None).await;
                    return counts;
                }
                Charge::Failed { declined, reason } => {
                    if declined {
                        counts.declined += 1;
                        metrics::counter!("scheduler_charges_total", "outcome" => "declined")
                            .increment(1);
                        self.attempt_row(
                            &job,
                            cycle,
                            attempt,
                            AttemptOutcome::Declined,
                            &reason,
                            as_of,
                        )
                        .await;
                    } else {
                        counts.faults += 1;
                    }
                    let (ladder, after) = match job
                        .ladder()
                        .on_failure(&self.settings.policy, as_of)
                    {
                        Ok(step) => step,
                        Err(error) => {
                            tracing::error!(subscription_id, %error, "the retry ladder refused a failure");
                            self.save(&job, token, None).await;
                            return counts;
                        }
                    };
                    // The order service first: if it cannot be told, nothing changes here and
                    // the same attempt is made again later (the payment service replays its
                    // recorded answer), so the two never disagree for long.
                    match self
                        .neighbours
                        .record_failure(subscription_id, cycle, attempt, after.is_final(), &reason)
                        .await
                    {
                        Ok(()) => {}
                        Err(CallFailure::Refused { code, message }) => {
                            // E.g. cancelled meanwhile: the next read of the subscription settles it.
                            tracing::warn!(subscription_id, ?code, %message, "the order service refused the failure");
                        }
                        Err(failure) => {
                            self.defer(
                                subscription_id,
                                "recording the failure",
                                &failure,
                                &mut counts,
                            );
                            return counts;
                        }
                    }
                    job.set_ladder(ladder);
                    if after.is_final() {
                        counts.suspended += 1;
                        metrics::counter!("scheduler_suspended_total").increment(1);
                        tracing::warn!(
                            subscription_id,
                            cycle,
                            failed_attempts = ladder.failed_attempts,
                            reason = %reason,
                            "renewal retries exhausted; subscription suspended"
                        );
                    } else {
                        counts.retried += 1;
                        tracing::info!(
                            subscription_id,
                            cycle,
                            failed_attempts = ladder.failed_attempts,
                            retry_on = ?ladder.next_attempt_date,
                            reason = %reason,
                            "renewal failed; retry scheduled"
                        );
                    }
                    self.save(&job, token, None).await;
                    return counts;
                }
            }
        }
    }

    /// Charges one cycle, retrying a fault at once as the policy allows.
    async fn charge(
        &self,
        job: &Job,
        cycle: i32,
        attempt: i32,
        amount: i64,
        as_of: NaiveDate,
    ) -> Charge {
        let request = ChargeRequest {
            subscription_id: job.subscription_id,
            cycle,
            attempt,
            amount,
            user_id: job.user_id,
            origin_order_id: job.origin_order_id,
            item_name: job.item_name.clone(),
            quantity: job.quantity,
        };
        let mut call = 1;
        loop {
            match self.neighbours.charge(&request).await {
                Ok(ChargeAnswer::Charged { charged_at }) => {
                    self.attempt_row(job, cycle, attempt, AttemptOutcome::Charged, "", as_of)
                        .await;
                    return Charge::Charged(charged_at.unwrap_or_else(|| self.clock.now()));
                }
                Ok(ChargeAnswer::Declined { reason }) => {
                    return Charge::Failed {
                        declined: true,
                        reason: if reason.is_empty() {
                            "declined".into()
                        } else {
                            reason
                        },
                    };
                }
                Err(CallFailure::NotSent(reason)) => return Charge::Deferred(reason),
                Err(CallFailure::Refused { code, message }) => {
                    return Charge::Failed {
                        declined: true,
                        reason: format!("refused ({code:?}): {message}"),
                    };
                }
                Err(CallFailure::Fault(reason)) => {
                    metrics::counter!("scheduler_charges_total", "outcome" => "fault").increment(1);
                    self.attempt_row(job, cycle, attempt, AttemptOutcome::Fault, &reason, as_of)
                        .await;
                    if self.settings.policy.retry_fault_at_once(call) {
                        call += 1;
                        continue;
                    }
                    return Charge::Failed {
                        declined: false,
                        reason,
                    };
                }
            }
        }
    }

    fn defer(
        &self,
        subscription_id: i64,
        during: &str,
        failure: &CallFailure,
        counts: &mut RunCounts,
    ) {
        counts.deferred += 1;
        metrics::counter!("scheduler_deferred_total").increment(1);
        tracing::warn!(
            subscription_id,
            during,
            %failure,
            "job deferred until its lease lapses"
        );
    }

    /// Writes the job and releases (`None`) or extends its lease; false when the lease was
    /// lost or the write failed (both logged: the lease lapses and the job is taken again).
    async fn save(&self, job: &Job, token: &str, lease_until_ms: Option<i64>) -> bool {
        match self
            .store
            .save_claimed(job, token, lease_until_ms, self.clock.now())
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    subscription_id = job.subscription_id,
                    token,
                    "lease lost before the job was written; another claim owns it"
                );
                false
            }
            Err(error) => {
                tracing::error!(subscription_id = job.subscription_id, %error, "writing the job failed");
                false
            }
        }
    }

    async fn attempt_row(
        &self,
        job: &Job,
        cycle: i32,
        attempt: i32,
        outcome: AttemptOutcome,
        reason: &str,
        as_of: NaiveDate,
    ) {
        // History for operators: losing a row must not stop billing.
        let row = Attempt {
            subscription_id: job.subscription_id,
            cycle,
            attempt,
            outcome: outcome.as_str().to_owned(),
            reason: reason.to_owned(),
            as_of,
            at: self.clock.now(),
        };
        if let Err(error) = self.store.record_attempt(&row).await {
            tracing::warn!(subscription_id = job.subscription_id, %error, "attempt not recorded");
        }
    }

    /// Refreshes the due and lag gauges as of `as_of`.
    pub async fn observe(&self, as_of: NaiveDate, today: NaiveDate) {
        match self.store.due_summary(as_of).await {
            Ok(summary) => {
                metrics::gauge!("scheduler_jobs_due").set(summary.due as f64);
                metrics::gauge!("scheduler_billing_lag_days")
                    .set(lag_days(summary.oldest_due, today) as f64);
            }
            Err(error) => tracing::warn!(%error, "due summary unavailable"),
        }
    }
}

/// The loop: every `interval`, a run as of the business date the clock says (today once the
/// billing hour has come, else yesterday), until `shutdown`.
pub async fn run_loop(
    biller: Arc<Biller>,
    calendar: BusinessCalendar,
    billing_hour: u32,
    interval: Duration,
    shutdown: Shutdown,
) {
    loop {
        let now = biller.clock.now();
        let as_of = as_of_for(now, &calendar, billing_hour);
        if let Err(error) = biller.run(as_of).await {
            tracing::error!(%error, %as_of, "billing loop run failed; trying again next tick");
        }
        biller.observe(as_of, calendar.date_of(now)).await;
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
