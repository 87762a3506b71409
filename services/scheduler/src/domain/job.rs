//! A billing job, and how it follows the order service's subscription.
//!
//! The order service owns the subscription; the job is the scheduler's copy of what billing
//! needs, kept close enough by events to know *when* to look, and made exact by reading the
//! subscription (`GetSubscriptionForBilling`) before every charge. Two sources, two rules:
//!
//! - **Events** carry a `version` that grows with every change. An event no newer than the
//!   last one applied is ignored, so duplicates and reordering converge on the newest state. An
//!   event whose cycle is behind the job's is ignored too: the job learned of a later renewal
//!   from the order service's own answer, and an older picture must not undo it.
//! - **The authoritative read** replaces the job's billing fields outright.
//!
//! The retry ladder (status ACTIVE/PAST_DUE, failed attempts, next attempt date) belongs to
//! the scheduler: the outside changes it only when a renewal moved the cycle on (a clean slate)
//! or the subscription ended (SUSPENDED, CANCELED). SUSPENDED and CANCELED are final: nothing
//! brings a job back from them (a customer re-subscribes with a new subscription).

use std::fmt;

use chrono::NaiveDate;

use super::dates::next_billing_date;
use super::ladder::Ladder;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Active,
    PastDue,
    Suspended,
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 4] = [
        JobStatus::Active,
        JobStatus::PastDue,
        JobStatus::Suspended,
        JobStatus::Canceled,
    ];

    /// As stored and as the events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Active => "ACTIVE",
            JobStatus::PastDue => "PAST_DUE",
            JobStatus::Suspended => "SUSPENDED",
            JobStatus::Canceled => "CANCELED",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Never billed again.
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Suspended | JobStatus::Canceled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The subscription's status as the order service reports it.
pub type SubscriptionStatus = JobStatus;

/// A subscription as carried by the order service's events (`SubscriptionState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    pub subscription_id: i64,
    pub user_id: i64,
    pub item_id: i64,
    pub quantity: i32,
    pub period_days: i32,
    pub unit_price: i64,
    pub status: SubscriptionStatus,
    pub last_billed_date: Option<NaiveDate>,
    pub next_billing_date: NaiveDate,
    pub cycle: i32,
    pub version: i64,
    pub origin_order_id: i64,
}

/// A subscription as `GetSubscriptionForBilling` answers it: the truth at the moment of a
/// charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    pub subscription_id: i64,
    pub item_id: i64,
    pub product_name: String,
    pub quantity: i32,
    pub period_days: i32,
    pub unit_price: i64,
    pub status: SubscriptionStatus,
    pub last_billed_date: Option<NaiveDate>,
    pub next_billing_date: NaiveDate,
    pub cycle: i32,
}

/// One billing job (a row of `billing_jobs`, without its lease).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub subscription_id: i64,
    pub user_id: i64,
    pub item_id: i64,
    pub item_name: String,
    pub quantity: i32,
    pub unit_price: i64,
    pub period_days: i32,
    pub origin_order_id: i64,
    pub status: JobStatus,
    pub next_billing_date: NaiveDate,
    pub last_billed_date: Option<NaiveDate>,
    /// The last cycle billed (0 = the first payment, which was the order's own).
    pub cycle: i32,
    pub failed_attempts: i32,
    pub next_attempt_date: Option<NaiveDate>,
    /// The version of the last subscription event applied (0: none yet).
    pub state_version: i64,
}

/// What an event does to the job it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateDecision {
    /// Write this job (new, or changed).
    Write(Job),
    /// Leave the job as it is: the event is older than what the job knows.
    Stale,
}

impl Job {
    /// A new job from the first event (or the first event to arrive) about a subscription.
    pub fn from_state(state: &SubscriptionState) -> Job {
        let ladder = if state.status.is_finished() {
            Ladder {
                status: state.status,
                failed_attempts: 0,
                next_attempt_date: None,
            }
        } else {
            Ladder {
                status: state.status,
                ..Ladder::ACTIVE
            }
        };
        let mut job = Job {
            subscription_id: state.subscription_id,
            user_id: state.user_id,
            item_id: state.item_id,
            item_name: String::new(),
            quantity: state.quantity,
            unit_price: state.unit_price,
            period_days: state.period_days,
            origin_order_id: state.origin_order_id,
            status: ladder.status,
            next_billing_date: state.next_billing_date,
            last_billed_date: state.last_billed_date,
            cycle: state.cycle,
            failed_attempts: 0,
            next_attempt_date: None,
            state_version: state.version,
        };
        job.set_ladder(ladder);
        job
    }

    /// What `state` (an event) does to this job; see the module documentation.
    pub fn apply_state(&self, state: &SubscriptionState) -> StateDecision {
        if state.version <= self.state_version || state.cycle < self.cycle {
            return StateDecision::Stale;
        }
        let mut job = self.clone();
        job.state_version = state.version;
        if self.status.is_finished() {
            return StateDecision::Write(job);
        }
        job.user_id = state.user_id;
        job.item_id = state.item_id;
        job.origin_order_id = state.origin_order_id;
        job.adopt_billing(
            state.status,
            state.cycle,
            state.last_billed_date,
            state.next_billing_date,
            state.quantity,
            state.unit_price,
            state.period_days,
        );
        StateDecision::Write(job)
    }

    /// The job made exact from the order service's answer before a charge.
    pub fn reconcile(&mut self, snapshot: &SubscriptionSnapshot) {
        if self.status.is_finished() {
            return;
        }
        if !snapshot.product_name.is_empty() {
            self.item_name = snapshot.product_name.clone();
        }
        self.item_id = snapshot.item_id;
        self.adopt_billing(
            snapshot.status,
            snapshot.cycle,
            snapshot.last_billed_date,
            snapshot.next_billing_date,
            snapshot.quantity,
            snapshot.unit_price,
            snapshot.period_days,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn adopt_billing(
        &mut self,
        status: SubscriptionStatus,
        cycle: i32,
        last_billed_date: Option<NaiveDate>,
        next_billing_date: NaiveDate,
        quantity: i32,
        unit_price: i64,
        period_days: i32,
    ) {
        if status.is_finished() {
            self.set_ladder(Ladder {
                status,
                failed_attempts: self.failed_attempts,
                next_attempt_date: None,
            });
        } else if cycle != self.cycle {
            // A renewal was recorded (by us, before a crash, or seen first by the order
            // service): the failures were about a cycle that is paid now.
            self.set_ladder(Ladder::ACTIVE);
        }
        self.cycle = cycle;
        self.last_billed_date = last_billed_date;
        self.next_billing_date = next_billing_date;
        self.quantity = quantity;
        self.unit_price = unit_price;
        self.period_days = period_days;
    }

    pub fn ladder(&self) -> Ladder {
        Ladder {
            status: self.status,
            failed_attempts: self.failed_attempts,
            next_attempt_date: self.next_attempt_date,
        }
    }

    pub fn set_ladder(&mut self, ladder: Ladder) {
        self.status = ladder.status;
        self.failed_attempts = ladder.failed_attempts;
        self.next_attempt_date = ladder.next_attempt_date;
    }

    /// Due for a charge in a run as of `as_of`: billable, its date come, and no retry pending
    /// for a later day. The claim query says the same in SQL (`store::due_condition`).
    pub fn is_due(&self, as_of: NaiveDate) -> bool {
        !self.status.is_finished()
            && self.next_billing_date <= as_of
            && self
                .next_attempt_date
                .is_none_or(|retry_on| retry_on <= as_of)
    }

    /// What one cycle costs: unit price × quantity, in KRW; `None` when that overflows or is
    /// negative (a corrupt row; never charged).
    pub fn amount(&self) -> Option<i64> {
        let amount = self.unit_price.checked_mul(i64::from(self.quantity))?;
        (amount >= 0 && self.quantity > 0).then_some(amount)
    }

    /// The cycle the next charge bills.
    pub fn charge_cycle(&self) -> i32 {
        self.cycle.saturating_add(1)
    }

    /// Cycle `cycle`, due on `billed`, was charged and recorded; `after` is the subscription
    /// the order service answered, when it did. Returns false when the ladder refuses (the job
    /// ended meanwhile).
    pub fn record_renewal(
        &mut self,
        cycle: i32,
        billed: NaiveDate,
        after: Option<&SubscriptionSnapshot>,
    ) -> bool {
        let Ok(ladder) = self.ladder().on_charged() else {
            return false;
        };
        self.set_ladder(ladder);
        match after {
            Some(snapshot) => {
                self.cycle = cycle;
                self.reconcile(snapshot);
            }
            None => {
                self.cycle = cycle;
                self.last_billed_date = Some(billed);
                if let Some(next) = next_billing_date(billed, self.period_days) {
                    self.next_billing_date = next;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ladder::RetryPolicy;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn state(version: i64, cycle: i32, next: &str, status: JobStatus) -> SubscriptionState {
        SubscriptionState {
            subscription_id: 7,
            user_id: 70,
            item_id: 700,
            quantity: 2,
            period_days: 30,
            unit_price: 15_000,
            status,
            last_billed_date: Some(day("2026-01-01")),
            next_billing_date: day(next),
            cycle,
            version,
            origin_order_id: 77,
        }
    }

    fn snapshot(cycle: i32, next: &str, status: JobStatus) -> SubscriptionSnapshot {
        SubscriptionSnapshot {
            subscription_id: 7,
            item_id: 700,
            product_name: "비타민C".into(),
            quantity: 2,
            period_days: 30,
            unit_price: 15_000,
            status,
            last_billed_date: Some(day("2026-01-01")),
            next_billing_date: day(next),
            cycle,
        }
    }

    fn written(decision: StateDecision) -> Job {
        match decision {
            StateDecision::Write(job) => job,
            StateDecision::Stale => panic!("expected a write"),
        }
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobStatus::parse("active"), None);
        assert!(JobStatus::Canceled.is_finished() && JobStatus::Suspended.is_finished());
        assert!(!JobStatus::Active.is_finished() && !JobStatus::PastDue.is_finished());
    }

    #[test]
    fn due_ness_table() {
        let mut job = Job::from_state(&state(1, 0, "2026-01-31", JobStatus::Active));
        let table: [(JobStatus, &str, Option<&str>, &str, bool); 9] = [
            (JobStatus::Active, "2026-01-31", None, "2026-01-30", false),
            (JobStatus::Active, "2026-01-31", None, "2026-01-31", true),
            (JobStatus::Active, "2026-01-31", None, "2026-03-01", true),
            (
                JobStatus::PastDue,
                "2026-01-31",
                Some("2026-02-01"),
                "2026-01-31",
                false,
            ),
            (
                JobStatus::PastDue,
                "2026-01-31",
                Some("2026-02-01"),
                "2026-02-01",
                true,
            ),
            (JobStatus::PastDue, "2026-01-31", None, "2026-01-31", true),
            (
                JobStatus::Suspended,
                "2026-01-31",
                None,
                "2026-02-01",
                false,
            ),
            (JobStatus::Canceled, "2026-01-31", None, "2026-02-01", false),
            (JobStatus::Active, "2028-02-29", None, "2028-02-28", false),
        ];
        for (status, next, retry_on, as_of, due) in table {
            job.status = status;
            job.next_billing_date = day(next);
            job.next_attempt_date = retry_on.map(day);
            assert_eq!(
                job.is_due(day(as_of)),
                due,
                "{status} {next} {retry_on:?} as of {as_of}"
            );
        }
    }

    #[test]
    fn amounts_are_exact_and_never_overflow() {
        let mut job = Job::from_state(&state(1, 0, "2026-01-31", JobStatus::Active));
        assert_eq!(job.amount(), Some(30_000));
        job.unit_price = 0;
        assert_eq!(job.amount(), Some(0));
        job.unit_price = i64::MAX;
        assert_eq!(job.amount(), None);
        job.unit_price = -1;
        assert_eq!(job.amount(), None);
        job.unit_price = 100;
        job.quantity = 0;
        assert_eq!(job.amount(), None);
    }

    #[test]
    fn events_apply_only_when_newer() {
        let job = Job::from_state(&state(3, 0, "2026-01-31", JobStatus::Active));
        assert_eq!(
            job.apply_state(&state(3, 0, "2026-02-28", JobStatus::Active)),
            StateDecision::Stale
        );
        assert_eq!(
            job.apply_state(&state(2, 0, "2026-02-28", JobStatus::Active)),
            StateDecision::Stale
        );
        let changed = written(job.apply_state(&state(4, 0, "2026-03-02", JobStatus::Active)));
        assert_eq!(changed.next_billing_date, day("2026-03-02"));
        assert_eq!(changed.state_version, 4);
    }

    #[test]
    fn an_event_behind_the_jobs_cycle_never_undoes_a_renewal() {
        let mut job = Job::from_state(&state(3, 0, "2026-01-31", JobStatus::Active));
        assert!(job.record_renewal(1, day("2026-01-31"), None));
        assert_eq!((job.cycle, job.next_billing_date), (1, day("2026-03-02")));
        // The period change (v4, still cycle 0) arrives after the renewal was recorded here.
        assert_eq!(
            job.apply_state(&state(4, 0, "2026-01-31", JobStatus::Active)),
            StateDecision::Stale
        );
        // The renewal's own event (v5, cycle 1) is applied.
        let renewed = written(job.apply_state(&state(5, 1, "2026-03-02", JobStatus::Active)));
        assert_eq!((renewed.cycle, renewed.state_version), (1, 5));
    }

    #[test]
    fn the_ladder_is_the_schedulers_until_the_cycle_moves_or_the_subscription_ends() {
        let mut job = Job::from_state(&state(1, 0, "2026-01-31", JobStatus::Active));
        let (ladder, _) = job
            .ladder()
            .on_failure(&RetryPolicy::default(), day("2026-01-31"))
            .unwrap();
        job.set_ladder(ladder);
        // A quantity change while PAST_DUE keeps the ladder (else every change would restart it).
        let mut change = state(2, 0, "2026-01-31", JobStatus::Active);
        change.quantity = 3;
        let changed = written(job.apply_state(&change));
        assert_eq!(changed.quantity, 3);
        assert_eq!(changed.ladder(), ladder);
        // A renewal clears it.
        let renewed = written(changed.apply_state(&state(3, 1, "2026-03-02", JobStatus::Active)));
        assert_eq!(renewed.ladder(), Ladder::ACTIVE);
        // Cancellation ends it, and nothing revives it.
        let canceled =
            written(renewed.apply_state(&state(4, 1, "2026-03-02", JobStatus::Canceled)));
        assert_eq!(canceled.status, JobStatus::Canceled);
        let later = written(canceled.apply_state(&state(9, 2, "2026-04-01", JobStatus::Active)));
        assert_eq!(
            (later.status, later.cycle, later.state_version),
            (JobStatus::Canceled, 1, 9)
        );
    }

    #[test]
    fn any_order_of_events_converges_on_the_newest() {
        let events = [
            state(1, 0, "2026-01-31", JobStatus::Active),
            state(2, 0, "2026-03-02", JobStatus::Active),
            state(3, 1, "2026-04-01", JobStatus::Active),
            state(4, 1, "2026-04-01", JobStatus::Canceled),
        ];
        let orders: [[usize; 6]; 4] = [
            [0, 1, 2, 3, 3, 1],
            [3, 2, 1, 0, 0, 2],
            [1, 3, 0, 2, 1, 0],
            [2, 0, 2, 3, 1, 3],
        ];
        for order in orders {
            let mut job: Option<Job> = None;
            for index in order {
                let event = &events[index];
                job = Some(match &job {
                    None => Job::from_state(event),
                    Some(current) => match current.apply_state(event) {
                        StateDecision::Write(next) => next,
                        StateDecision::Stale => current.clone(),
                    },
                });
            }
            let job = job.unwrap();
            assert_eq!(
                (job.status, job.state_version),
                (JobStatus::Canceled, 4),
                "{order:?}"
            );
        }
    }

    #[test]
    fn the_authoritative_read_wins() {
        let mut job = Job::from_state(&state(1, 0, "2026-01-31", JobStatus::Active));
        // Renewed elsewhere (a crash after RecordRenewal): the cycle and dates are adopted.
        job.reconcile(&snapshot(1, "2026-03-02", JobStatus::Active));
        assert_eq!((job.cycle, job.next_billing_date), (1, day("2026-03-02")));
        assert_eq!(job.item_name, "비타민C");
        assert!(!job.is_due(day("2026-03-01")));
        // Cancelled at the order service: never charged.
        job.reconcile(&snapshot(1, "2026-03-02", JobStatus::Canceled));
        assert_eq!(job.status, JobStatus::Canceled);
        assert!(!job.is_due(day("2027-01-01")));
        job.reconcile(&snapshot(1, "2026-03-02", JobStatus::Active));
        assert_eq!(job.status, JobStatus::Canceled);
    }

    #[test]
    fn a_recorded_renewal_advances_one_period_and_reactivates() {
        let mut job = Job::from_state(&state(1, 0, "2028-01-31", JobStatus::Active));
        let (ladder, _) = job
            .ladder()
            .on_failure(&RetryPolicy::default(), day("2028-01-31"))
            .unwrap();
        job.set_ladder(ladder);
        assert!(job.record_renewal(1, day("2028-01-31"), None));
        assert_eq!(job.ladder(), Ladder::ACTIVE);
        assert_eq!(job.last_billed_date, Some(day("2028-01-31")));
        assert_eq!(job.next_billing_date, day("2028-03-01"));
        // With the order service's answer, its dates are taken.
        assert!(job.record_renewal(
            2,
            day("2028-03-01"),
            Some(&snapshot(2, "2028-03-31", JobStatus::Active))
        ));
        assert_eq!((job.cycle, job.next_billing_date), (2, day("2028-03-31")));
        job.status = JobStatus::Canceled;
        assert!(!job.record_renewal(3, day("2028-03-31"), None));
    }
}
