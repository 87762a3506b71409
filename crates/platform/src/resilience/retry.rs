//! Retrying without making an outage worse: a retry budget and jittered exponential backoff.
//!
//! Retries per call are capped elsewhere (`max_retries`); the budget caps them per downstream,
//! as in Finagle and linkerd: every call deposits, every retry withdraws, and retries stop
//! once they would exceed `ratio` of recent calls plus a small floor (`min_retries_per_second`)
//! that lets a quiet client still retry. When a downstream fails for everyone, retries then add
//! at most `ratio` extra load instead of multiplying it by `max_retries + 1`.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// How many buckets the budget's time to live is cut into: recent activity expires in steps of
/// a tenth of `ttl`, which is smooth enough and keeps the bookkeeping a fixed-size array.
const BUCKETS: usize = 10;
/// Fixed-point scale for tokens, so a ratio like 0.2 adds exact fractions of a retry.
const ONE_RETRY: i64 = 1000;

/// A shared allowance of retries for one downstream. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct RetryBudget(Arc<Budget>);

struct Budget {
    /// Tokens (in thousandths of a retry) each deposit adds.
    per_deposit: i64,
    /// Tokens always available over one `ttl`: `min_retries_per_second × ttl`.
    reserve: i64,
    bucket_width: Duration,
    started: Instant,
    ledger: Mutex<[Bucket; BUCKETS]>,
}

/// Activity during one bucket-wide slice of time.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which slice since `started` this bucket counts; stale buckets are reset before use.
    slice: u64,
    deposits: u64,
    withdrawals: u64,
}

impl RetryBudget {
    /// Retries may make up `ratio` of the calls of the last `ttl` (0.2 = one retry per five
    /// calls), plus `min_retries_per_second` regardless of traffic. A negative or non-finite
    /// `ratio` counts as 0; `ttl` is at least one second, as in Finagle.
    pub fn new(ratio: f32, min_retries_per_second: u32, ttl: Duration) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.max(0.0)
        } else {
            0.0
        };
        let ttl = ttl.max(Duration::from_secs(1));
        let per_deposit = (f64::from(ratio) * ONE_RETRY as f64).round() as i64;
        let reserve =
            (f64::from(min_retries_per_second) * ttl.as_secs_f64() * ONE_RETRY as f64) as i64;
        RetryBudget(Arc::new(Budget {
            per_deposit,
            reserve,
            bucket_width: ttl / BUCKETS as u32,
            started: Instant::now(),
            ledger: Mutex::new([Bucket::default(); BUCKETS]),
        }))
    }

    /// Records one call (each logical call deposits once, however many attempts it makes).
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Takes one retry from the budget; `false` means do not retry.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(Instant::now())
    }

    fn deposit_at(&self, now: Instant) {
        let slice = self.0.slice(now);
        let mut ledger = self.lock();
        current(&mut ledger, slice).deposits += 1;
    }

    fn try_withdraw_at(&self, now: Instant) -> bool {
        let slice = self.0.slice(now);
        let mut ledger = self.lock();
        if self.0.balance(&ledger, slice) < ONE_RETRY {
            return false;
        }
        current(&mut ledger, slice).withdrawals += 1;
        true
    }

    fn lock(&self) -> MutexGuard<'_, [Bucket; BUCKETS]> {
        // Each critical section is a single counter update, so a poisoned ledger is still
        // consistent.
        self.0
            .ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Budget {
    fn slice(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started);
        u64::try_from(elapsed.as_nanos() / self.bucket_width.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// Tokens left, counting only buckets from the last `ttl`.
    fn balance(&self, ledger: &[Bucket; BUCKETS], slice: u64) -> i64 {
        let (deposits, withdrawals) = ledger.iter().filter(|bucket| is_live(bucket, slice)).fold(
            (0i64, 0i64),
            |(deposits, withdrawals), bucket| {
                (
                    deposits.saturating_add(bucket.deposits as i64),
                    withdrawals.saturating_add(bucket.withdrawals as i64),
                )
            },
        );
        self.reserve
            .saturating_add(deposits.saturating_mul(self.per_deposit))
            .saturating_sub(withdrawals.saturating_mul(ONE_RETRY))
    }
}

fn is_live(bucket: &Bucket, slice: u64) -> bool {
    bucket.slice <= slice && slice - bucket.slice < BUCKETS as u64
}

/// The bucket for `slice`, emptied first if it still holds an older slice.
fn current(ledger: &mut [Bucket; BUCKETS], slice: u64) -> &mut Bucket {
    let bucket = &mut ledger[(slice % BUCKETS as u64) as usize];
    if bucket.slice != slice {
        *bucket = Bucket {
            slice,
            deposits: 0,
            withdrawals: 0,
        };
    }
    bucket
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RetryBudget")
            .field(
                "per_deposit",
                &(self.0.per_deposit as f64 / ONE_RETRY as f64),
            )
            .field("reserve", &(self.0.reserve as f64 / ONE_RETRY as f64))
            .field("ttl", &(self.0.bucket_width * BUCKETS as u32))
            .finish()
    }
}

/// Jittered exponential backoff: attempt `n` (from 0) waits a uniformly random time between
/// zero and `min(max, base × 2ⁿ)`. "Full jitter" spreads retries from many callers that failed
/// together, so they do not return together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The longest wait before retry number `attempt` (0 for the first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// How long to wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn withdrawals(budget: &RetryBudget, now: Instant) -> usize {
        // Bounded so a broken budget fails the test instead of spinning.
        (0..100_000)
            .take_while(|_| budget.try_withdraw_at(now))
            .count()
    }

    #[test]
    fn the_reserve_allows_min_retries_per_second_over_the_ttl() {
        let budget = RetryBudget::new(0.2, 10, 10 * SECOND);
        let now = budget.0.started;
        assert_eq!(withdrawals(&budget, now), 100);
        assert!(!budget.try_withdraw_at(now));
    }

    #[test]
    fn deposits_buy_retries_at_the_ratio() {
        // (ratio, deposits, retries allowed) with no reserve.
        let cases = [
            (0.2, 0, 0),
            (0.2, 4, 0),
            (0.2, 5, 1),
            (0.2, 50, 10),
            (0.5, 3, 1),
            (1.0, 7, 7),
            (0.0, 100, 0),
            (-1.0, 100, 0),
            (f32::NAN, 100, 0),
        ];
        for (ratio, deposits, allowed) in cases {
            let budget = RetryBudget::new(ratio, 0, 10 * SECOND);
            let now = budget.0.started;
            for _ in 0..deposits {
                budget.deposit_at(now);
            }
            assert_eq!(
                withdrawals(&budget, now),
                allowed,
                "ratio {ratio}, {deposits} deposits"
            );
        }
    }

    #[test]
    fn an_exhausted_budget_is_replenished_by_new_calls() {
        let budget = RetryBudget::new(0.2, 0, 10 * SECOND);
        let now = budget.0.started;
        for _ in 0..10 {
            budget.deposit_at(now);
        }
        assert_eq!(withdrawals(&budget, now), 2);
        assert!(!budget.try_withdraw_at(now));
        for _ in 0..5 {
            budget.deposit_at(now);
        }
        assert!(budget.try_withdraw_at(now));
        assert!(!budget.try_withdraw_at(now));
    }

    #[test]
    fn deposits_and_withdrawals_expire_after_the_ttl() {
        let budget = RetryBudget::new(1.0, 0, 10 * SECOND);
        let t0 = budget.0.started;
        for _ in 0..3 {
            budget.deposit_at(t0);
        }
        // Deposits from t0 expire once the window has moved a full ttl past them.
        assert_eq!(withdrawals(&budget, t0 + 10 * SECOND), 0);

        let budget = RetryBudget::new(0.0, 1, 10 * SECOND);
        let t0 = budget.0.started;
        assert_eq!(withdrawals(&budget, t0), 10);
        // Still spent half a ttl later...
        assert_eq!(withdrawals(&budget, t0 + 5 * SECOND), 0);
        // ...and available again once those withdrawals are older than the ttl.
        assert_eq!(withdrawals(&budget, t0 + 10 * SECOND), 10);
    }

    #[test]
    fn the_public_budget_works_on_the_real_clock() {
        let budget = RetryBudget::new(0.5, 0, 10 * SECOND);
        assert!(!budget.try_withdraw());
        budget.deposit();
        budget.deposit();
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }

    #[test]
    fn backoff_ceilings_double_up_to_the_maximum() {
        let millis = Duration::from_millis;
        let backoff = Backoff {
            base: millis(25),
            max: millis(250),
        };
        // (attempt, ceiling)
        let cases = [
            (0, millis(25)),
            (1, millis(50)),
            (2, millis(100)),
            (3, millis(200)),
            (4, millis(250)),
            (31, millis(250)),
            (32, millis(250)),
            (u32::MAX, millis(250)),
        ];
        for (attempt, ceiling) in cases {
            assert_eq!(backoff.ceiling(attempt), ceiling, "attempt {attempt}");
        }
        let capped = Backoff {
            base: millis(500),
            max: millis(100),
        };
        assert_eq!(capped.ceiling(0), millis(100));
        let unbounded = Backoff {
            base: millis(1),
            max: Duration::MAX,
        };
        assert_eq!(unbounded.ceiling(u32::MAX), millis(1) * u32::MAX);
    }

    #[test]
    fn backoff_delays_are_jittered_within_the_ceiling() {
        let backoff = Backoff {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        };
        for attempt in [0, 1, 2, 3, 4, 10] {
            let ceiling = backoff.ceiling(attempt);
            let delays: Vec<Duration> = (0..500).map(|_| backoff.delay(attempt)).collect();
            assert!(
                delays.iter().all(|delay| *delay <= ceiling),
                "attempt {attempt}"
            );
            // Full jitter: spread over the range, not stuck at one end. 500 uniform draws all
            // landing in one half has probability 2⁻⁴⁹⁹.
            assert!(delays.iter().any(|delay| *delay < ceiling / 2));
            assert!(delays.iter().any(|delay| *delay > ceiling / 2));
        }
        let none = Backoff {
            base: Duration::ZERO,
            max: Duration::from_millis(250),
        };
        assert_eq!(none.delay(3), Duration::ZERO);
    }
}
