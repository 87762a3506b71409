//! The retry ladder of a failed renewal (SPEC section 7, from the original; configurable):
//!
//! 1. a fault (the payment service unreachable, a timeout) is retried at once, within the same
//!    run, `immediate_fault_retries` times — the charge carries its `(subscription, cycle)`
//!    identity, so a repeat can never charge twice;
//! 2. a failure that remains (a decline, or the fault again) makes the job PAST_DUE and
//!    schedules the next attempt `interval_days` later, up to `retries` times;
//! 3. when the last of those retries fails too, the job is SUSPENDED: billing stops for good.
//!
//! Days are business dates, not instants: the next attempt is "the run as of D + 1", so an
//! operator's `asOf` runs drive the ladder exactly like the daily loop does.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::dates::add_days;
use super::job::JobStatus;

/// How failed renewals are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Extra attempts at once, within the same run, after a fault (never after a decline).
    pub immediate_fault_retries: u32,
    /// Later attempts after the first failure before giving up (SPEC: 3).
    pub retries: u32,
    /// Days between those attempts (SPEC: every 24 hours, i.e. 1).
    pub interval_days: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            immediate_fault_retries: 1,
            retries: 3,
            interval_days: 1,
        }
    }
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if self.immediate_fault_retries > 5 {
            return Err("retry.immediate_fault_retries must be between 0 and 5".into());
        }
        if self.retries > 30 {
            return Err("retry.retries must be between 0 and 30".into());
        }
        if !(1..=30).contains(&self.interval_days) {
            return Err("retry.interval_days must be between 1 and 30".into());
        }
        Ok(())
    }

    /// Whether a fault on attempt `attempt` (1 = the first call of this run) is retried at once.
    pub fn retry_fault_at_once(&self, attempt: u32) -> bool {
        attempt <= self.immediate_fault_retries
    }
}

/// Where the ladder stands for one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ladder {
    pub status: JobStatus,
    /// Failed attempts of the current cycle.
    pub failed_attempts: i32,
    /// When a PAST_DUE job is tried again.
    pub next_attempt_date: Option<NaiveDate>,
}

/// What a failure led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// PAST_DUE: tried again as of this date.
    RetryOn(NaiveDate),
    /// Retries exhausted.
    Suspend,
}

impl AfterFailure {
    /// Whether the order service is told this failure is final (it suspends the subscription).
    pub fn is_final(self) -> bool {
        matches!(self, AfterFailure::Suspend)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LadderError {
    /// SUSPENDED and CANCELED jobs are never billed, so nothing can succeed or fail on them.
    #[error("a {0} job is not billed")]
    Finished(JobStatus),
    /// The retry date would leave the calendar's range.
    #[error("no retry date after {0}")]
    OutOfRange(NaiveDate),
}

impl Ladder {
    /// A job nothing has failed on.
    pub const ACTIVE: Ladder = Ladder {
        status: JobStatus::Active,
        failed_attempts: 0,
        next_attempt_date: None,
    };

    /// A renewal failed in the run as of `as_of` (after any immediate retries).
    pub fn on_failure(
        self,
        policy: &RetryPolicy,
        as_of: NaiveDate,
    ) -> Result<(Ladder, AfterFailure), LadderError> {
        if self.status.is_finished() {
            return Err(LadderError::Finished(self.status));
        }
        let failed_attempts = self.failed_attempts.saturating_add(1);
        // The first failure is not a retry; each later one is.
        let retries_used = u32::try_from(failed_attempts - 1).unwrap_or(0);
        if retries_used >= policy.retries {
            let ladder = Ladder {
                status: JobStatus::Suspended,
                failed_attempts,
                next_attempt_date: None,
            };
            return Ok((ladder, AfterFailure::Suspend));
        }
        let retry_on =
            add_days(as_of, policy.interval_days).ok_or(LadderError::OutOfRange(as_of))?;
        let ladder = Ladder {
            status: JobStatus::PastDue,
            failed_attempts,
            next_attempt_date: Some(retry_on),
        };
        Ok((ladder, AfterFailure::RetryOn(retry_on)))
    }

    /// A renewal was charged: back to ACTIVE with a clean slate (PAST_DUE → ACTIVE).
    pub fn on_charged(self) -> Result<Ladder, LadderError> {
        if self.status.is_finished() {
            return Err(LadderError::Finished(self.status));
        }
        Ok(Ladder::ACTIVE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn past_due(failed_attempts: i32, next: &str) -> Ladder {
        Ladder {
            status: JobStatus::PastDue,
            failed_attempts,
            next_attempt_date: Some(day(next)),
        }
    }

    fn suspended(failed_attempts: i32) -> Ladder {
        Ladder {
            status: JobStatus::Suspended,
            failed_attempts,
            next_attempt_date: None,
        }
    }

    /// Every step of the SPEC's ladder, one run per day: a first failure, three daily retries,
    /// then SUSPENDED.
    #[test]
    fn the_default_ladder_step_by_step() {
        let policy = RetryPolicy::default();
        let table = [
            (
                Ladder::ACTIVE,
                "2026-03-01",
                past_due(1, "2026-03-02"),
                false,
            ),
            (
                past_due(1, "2026-03-02"),
                "2026-03-02",
                past_due(2, "2026-03-03"),
                false,
            ),
            (
                past_due(2, "2026-03-03"),
                "2026-03-03",
                past_due(3, "2026-03-04"),
                false,
            ),
            (past_due(3, "2026-03-04"), "2026-03-04", suspended(4), true),
        ];
        for (before, as_of, after, is_final) in table {
            let (ladder, outcome) = before.on_failure(&policy, day(as_of)).unwrap();
            assert_eq!(ladder, after, "{before:?} failing as of {as_of}");
            assert_eq!(outcome.is_final(), is_final, "{before:?}");
        }
    }

    #[test]
    fn a_success_at_any_step_reactivates() {
        for before in [
            Ladder::ACTIVE,
            past_due(1, "2026-03-02"),
            past_due(3, "2026-03-04"),
        ] {
            assert_eq!(before.on_charged(), Ok(Ladder::ACTIVE), "{before:?}");
        }
    }

    #[test]
    fn finished_jobs_neither_succeed_nor_fail() {
        let policy = RetryPolicy::default();
        for status in [JobStatus::Suspended, JobStatus::Canceled] {
            let ladder = Ladder {
                status,
                failed_attempts: 0,
                next_attempt_date: None,
            };
            assert_eq!(ladder.on_charged(), Err(LadderError::Finished(status)));
            assert_eq!(
                ladder.on_failure(&policy, day("2026-03-01")),
                Err(LadderError::Finished(status))
            );
        }
    }

    #[test]
    fn the_ladder_follows_its_configuration() {
        // No retries: the first failure suspends.
        let none = RetryPolicy {
            retries: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(
            Ladder::ACTIVE.on_failure(&none, day("2026-03-01")).unwrap(),
            (suspended(1), AfterFailure::Suspend)
        );
        // Weekly retries, twice.
        let weekly = RetryPolicy {
            retries: 2,
            interval_days: 7,
            ..RetryPolicy::default()
        };
        let (first, _) = Ladder::ACTIVE
            .on_failure(&weekly, day("2028-02-25"))
            .unwrap();
        assert_eq!(first, past_due(1, "2028-03-03"));
        let (second, _) = first.on_failure(&weekly, day("2028-03-03")).unwrap();
        assert_eq!(second, past_due(2, "2028-03-10"));
        let (third, outcome) = second.on_failure(&weekly, day("2028-03-10")).unwrap();
        assert_eq!((third, outcome), (suspended(3), AfterFailure::Suspend));
    }

    #[test]
    fn retry_dates_count_from_the_run_not_the_due_date() {
        // A job due long ago that fails in a catch-up run is retried the day after that run.
        let (ladder, outcome) = Ladder::ACTIVE
            .on_failure(&RetryPolicy::default(), day("2026-12-31"))
            .unwrap();
        assert_eq!(outcome, AfterFailure::RetryOn(day("2027-01-01")));
        assert_eq!(ladder.next_attempt_date, Some(day("2027-01-01")));
        assert_eq!(
            Ladder::ACTIVE.on_failure(&RetryPolicy::default(), NaiveDate::MAX),
            Err(LadderError::OutOfRange(NaiveDate::MAX))
        );
    }

    #[test]
    fn faults_are_retried_at_once_only_as_configured() {
        let policy = RetryPolicy::default();
        assert!(policy.retry_fault_at_once(1));
        assert!(!policy.retry_fault_at_once(2));
        let never = RetryPolicy {
            immediate_fault_retries: 0,
            ..policy
        };
        assert!(!never.retry_fault_at_once(1));
    }

    #[test]
    fn policies_are_validated() {
        assert_eq!(RetryPolicy::default().validate(), Ok(()));
        let broken: [(&str, RetryPolicy); 3] = [
            (
                "retry.immediate_fault_retries",
                RetryPolicy {
                    immediate_fault_retries: 6,
                    ..Default::default()
                },
            ),
            (
                "retry.retries",
                RetryPolicy {
                    retries: 31,
                    ..Default::default()
                },
            ),
            (
                "retry.interval_days",
                RetryPolicy {
                    interval_days: 0,
                    ..Default::default()
                },
            ),
        ];
        for (field, policy) in broken {
            assert!(policy.validate().unwrap_err().starts_with(field), "{field}");
        }
    }

    proptest! {
        /// Whatever the policy, consecutive daily failures suspend after exactly `retries + 1`
        /// failures, and every step before that is PAST_DUE with a date after the run.
        #[test]
        fn failures_always_end_suspended(retries in 0u32..10, interval in 1u32..10, start in 0i64..20_000) {
            let policy = RetryPolicy { immediate_fault_retries: 1, retries, interval_days: interval };
            let mut as_of = day("2000-01-01") + chrono::Duration::days(start);
            let mut ladder = Ladder::ACTIVE;
            for step in 1..=(retries + 1) {
                let (next, outcome) = ladder.on_failure(&policy, as_of).unwrap();
                prop_assert_eq!(next.failed_attempts, step as i32);
                if step == retries + 1 {
                    prop_assert_eq!(next.status, JobStatus::Suspended);
                    prop_assert!(outcome.is_final());
                } else {
                    prop_assert_eq!(next.status, JobStatus::PastDue);
                    let retry_on = next.next_attempt_date.unwrap();
                    prop_assert_eq!((retry_on - as_of).num_days(), i64::from(interval));
                    as_of = retry_on;
                }
                ladder = next;
            }
            prop_assert!(ladder.on_failure(&policy, as_of).is_err());
        }
    }
}
