//! A count-based circuit breaker with Resilience4j semantics.
//!
//! The breaker keeps the outcomes of the last `window` calls that reached the downstream. In
//! Closed it starts judging as soon as `minimum_calls` outcomes are known (not only once the
//! window is full, which is where tower-resilience differs), and opens when the failure rate is
//! at or above the threshold. Open rejects every call until `open_for` has passed; the next
//! caller then finds it HalfOpen, where at most `half_open_trials` calls are let through and
//! their outcomes alone decide between Closed (with a fresh window) and Open again.
//!
//! The API is a guard rather than a tower layer so any client can use it: take a
//! [`CallPermit`] before the call, then say how it went. Only faults (the downstream is unwell)
//! count; a business answer is a success, and a call that was cancelled or never judged is
//! ignored, which is also what dropping the permit does.
//!
//! Every transition bumps an epoch stored in the permits handed out before it, so a slow call
//! from an earlier phase cannot vote in a later one (nor free a half-open trial slot it never
//! held).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The largest window accepted: the ring buffer is allocated up front, and a window this long
/// already reacts too slowly to be useful.
const MAX_WINDOW: u32 = 10_000;
/// The longest open period accepted; anything longer is a typo that would keep a healthy
/// downstream cut off for hours.
const MAX_OPEN_FOR_MS: u64 = 3_600_000;
/// What a rejection suggests as `retry_after` while half-open trials are in flight: they
/// usually finish quickly, and the breaker cannot know when.
const HALF_OPEN_RETRY_HINT: Duration = Duration::from_secs(1);

/// How a breaker judges its downstream. Defaults are the original system's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// How many of the latest recorded outcomes the failure rate is computed over.
    pub window: u32,
    /// With fewer recorded outcomes than this the breaker never opens: a handful of calls says
    /// little about a downstream.
    pub minimum_calls: u32,
    /// Opens when the failure rate is at or above this percentage (1–100).
    pub failure_rate_percent: u8,
    /// How long an open breaker rejects every call before letting trial calls through.
    pub open_for_ms: u64,
    /// How many trial calls a half-open breaker admits; their outcomes decide.
    pub half_open_trials: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 40,
            minimum_calls: 20,
            failure_rate_percent: 60,
            open_for_ms: 10_000,
            half_open_trials: 10,
        }
    }
}

impl BreakerConfig {
    /// Checks the rules; the error is one line for an operator.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return Err(format!(
                "circuit breaker: window must be between 1 and {MAX_WINDOW} (got {})",
                self.window
            ));
        }
        if !(1..=self.window).contains(&self.minimum_calls) {
            return Err(format!(
                "circuit breaker: minimum_calls must be between 1 and window ({}) (got {})",
                self.window, self.minimum_calls
            ));
        }
        if !(1..=100).contains(&self.failure_rate_percent) {
            return Err(format!(
                "circuit breaker: failure_rate_percent must be between 1 and 100 (got {})",
                self.failure_rate_percent
            ));
        }
        if !(1..=MAX_OPEN_FOR_MS).contains(&self.open_for_ms) {
            return Err(format!(
                "circuit breaker: open_for_ms must be between 1 and {MAX_OPEN_FOR_MS} (got {})",
                self.open_for_ms
            ));
        }
        if self.half_open_trials == 0 {
            return Err("circuit breaker: half_open_trials must be at least 1".into());
        }
        Ok(())
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are being counted.
    Closed,
    /// Calls are rejected without reaching the downstream.
    Open,
    /// A limited number of trial calls decide whether to close again.
    HalfOpen,
}

impl BreakerState {
    /// The name used in metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `pillivery_circuit_breaker_state` gauge.
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A call was rejected without reaching the downstream.
#[derive(Debug, thiserror::Error)]
#[error("circuit breaker `{name}` is open")]
pub struct BreakerOpen {
    pub name: String,
    /// When trying again may succeed: the rest of the open period, or a short hint while the
    /// half-open trials are all taken.
    pub retry_after: Duration,
}

/// A circuit breaker for one downstream. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct CircuitBreaker(Arc<Shared>);

struct Shared {
    /// `Arc<str>` so every metric label is a reference count bump, not an allocation.
    name: Arc<str>,
    settings: Settings,
    machine: Mutex<Machine>,
}

impl CircuitBreaker {
    /// A closed breaker. `config` should have been validated with the rest of the
    /// configuration; out-of-range values are clamped here rather than panicking.
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        let name: Arc<str> = Arc::from(name.into());
        let settings = Settings::from(&config);
        let machine = Machine::new(settings.window);
        metrics::gauge!("pillivery_circuit_breaker_state", "breaker" => name.clone())
            .set(BreakerState::Closed.gauge_value());
        CircuitBreaker(Arc::new(Shared {
            name,
            settings,
            machine: Mutex::new(machine),
        }))
    }

    /// Asks to make one call. Never waits and does no I/O, so an open breaker answers at once.
    pub fn try_acquire(&self) -> Result<CallPermit, BreakerOpen> {
        self.try_acquire_at(Instant::now())
    }

    /// The current state; an open breaker whose period has passed is reported (and becomes)
    /// half-open.
    pub fn state(&self) -> BreakerState {
        let (state, transition) = {
            let mut machine = self.lock();
            let transition = machine.leave_open_if_due(Instant::now());
            self.publish(transition.as_ref());
            (machine.phase.state(), transition)
        };
        self.log(transition.as_ref());
        state
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    fn try_acquire_at(&self, now: Instant) -> Result<CallPermit, BreakerOpen> {
        let (admission, transition) = {
            let mut machine = self.lock();
            let (admission, transition) = machine.admit(&self.0.settings, now);
            self.publish(transition.as_ref());
            (admission, transition)
        };
        self.log(transition.as_ref());
        match admission {
            Ok(epoch) => Ok(CallPermit {
                breaker: Some(self.clone()),
                epoch,
            }),
            Err(retry_after) => {
                metrics::counter!("pillivery_circuit_breaker_rejected_total", "breaker" => self.0.name.clone())
                    .increment(1);
                Err(BreakerOpen {
                    name: self.0.name.to_string(),
                    retry_after,
                })
            }
        }
    }

    fn record(&self, epoch: u64, outcome: Outcome, now: Instant) {
        let label = match outcome {
            Outcome::Success => Some("success"),
            Outcome::Fault => Some("fault"),
            Outcome::Ignored => None,
        };
        if let Some(label) = label {
            // Counted even when the permit is stale: the call did happen.
            metrics::counter!(
                "pillivery_circuit_breaker_calls_total",
                "breaker" => self.0.name.clone(),
                "outcome" => label
            )
            .increment(1);
        }
        let transition = {
            let mut machine = self.lock();
            let transition = machine.record(&self.0.settings, epoch, outcome, now);
            self.publish(transition.as_ref());
            transition
        };
        self.log(transition.as_ref());
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // Every critical section only updates plain counters and cannot leave the machine
        // half-changed, so the state behind a poisoned lock is still consistent.
        self.0
            .machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Metrics for a transition, emitted while the lock is still held so concurrent
    /// transitions set the gauge in the order they happened.
    fn publish(&self, transition: Option<&Transition>) {
        let Some(transition) = transition else {
            return;
        };
        metrics::gauge!("pillivery_circuit_breaker_state", "breaker" => self.0.name.clone())
            .set(transition.to.gauge_value());
        metrics::counter!(
            "pillivery_circuit_breaker_transitions_total",
            "breaker" => self.0.name.clone(),
            "from" => transition.from.as_str(),
            "to" => transition.to.as_str()
        )
        .increment(1);
    }

    /// The log line for a transition, written after the lock is released (writing a log may
    /// block on I/O).
    fn log(&self, transition: Option<&Transition>) {
        let Some(transition) = transition else {
            return;
        };
        tracing::warn!(
            breaker = %self.0.name,
            from = transition.from.as_str(),
            to = transition.to.as_str(),
            failure_rate = transition.failure_rate,
            "circuit breaker changed state"
        );
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The stored phase, without moving an expired Open on: formatting has no side effects.
        let state = self.lock().phase.state();
        formatter
            .debug_struct("CircuitBreaker")
            .field("name", &self.0.name)
            .field("state", &state)
            .finish()
    }
}

/// Permission to make one call. Record how it went with [`success`](CallPermit::success) or
/// [`fault`](CallPermit::fault); dropping it records nothing (the same as
/// [`ignore`](CallPermit::ignore)), which is right for a cancelled call.
#[must_use = "record the call's outcome with success() or fault(); dropping the permit ignores the call"]
pub struct CallPermit {
    /// `None` once the outcome is recorded, so `Drop` does not record a second time.
    breaker: Option<CircuitBreaker>,
    epoch: u64,
}

impl CallPermit {
    /// The downstream answered, including with a business error (not found, declined...).
    pub fn success(self) {
        self.finish(Outcome::Success, Instant::now());
    }

    /// The downstream is unwell: unavailable, timed out, internal error.
    pub fn fault(self) {
        self.finish(Outcome::Fault, Instant::now());
    }

    /// The call says nothing about the downstream (cancelled, rejected locally, ...).
    pub fn ignore(self) {
        self.finish(Outcome::Ignored, Instant::now());
    }

    fn finish(mut self, outcome: Outcome, now: Instant) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(self.epoch, outcome, now);
        }
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(self.epoch, Outcome::Ignored, Instant::now());
        }
    }
}

impl fmt::Debug for CallPermit {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CallPermit")
            .field("breaker", &self.breaker.as_ref().map(CircuitBreaker::name))
            .field("epoch", &self.epoch)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    Fault,
    Ignored,
}

/// The configuration with every value in range.
#[derive(Clone, Copy, Debug)]
struct Settings {
    window: usize,
    minimum_calls: usize,
    failure_rate_percent: u64,
    open_for: Duration,
    half_open_trials: u32,
}

impl From<&BreakerConfig> for Settings {
    fn from(config: &BreakerConfig) -> Self {
        let window = config.window.clamp(1, MAX_WINDOW);
        Settings {
            window: window as usize,
            minimum_calls: config.minimum_calls.clamp(1, window) as usize,
            failure_rate_percent: u64::from(config.failure_rate_percent.clamp(1, 100)),
            open_for: Duration::from_millis(config.open_for_ms.clamp(1, MAX_OPEN_FOR_MS)),
            half_open_trials: config.half_open_trials.max(1),
        }
    }
}

impl Settings {
    fn trips(&self, faults: usize, calls: usize) -> bool {
        faults as u64 * 100 >= self.failure_rate_percent * calls as u64
    }
}

struct Transition {
    from: BreakerState,
    to: BreakerState,
    /// The failure rate (percent) that decided the transition, if outcomes decided it.
    failure_rate: Option<f64>,
}

enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// Trial permits handed out and not ignored: in flight or recorded.
        admitted: u32,
        recorded: u32,
        faults: u32,
    },
}

impl Phase {
    fn state(&self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// The state machine, free of locks, clocks and metrics.
struct Machine {
    phase: Phase,
    /// Bumped on every transition; permits carry the epoch they were issued in.
    epoch: u64,
    window: Window,
}

impl Machine {
    fn new(window: usize) -> Self {
        Machine {
            phase: Phase::Closed,
            epoch: 0,
            window: Window::new(window),
        }
    }

    /// Admits a call (returning the epoch for its permit) or says how long to stay away.
    fn admit(
        &mut self,
        settings: &Settings,
        now: Instant,
    ) -> (Result<u64, Duration>, Option<Transition>) {
        let transition = self.leave_open_if_due(now);
        let admission = match &mut self.phase {
            Phase::Closed => Ok(self.epoch),
            Phase::Open { until } => Err(until.saturating_duration_since(now)),
            Phase::HalfOpen { admitted, .. } => {
                if *admitted < settings.half_open_trials {
                    *admitted += 1;
                    Ok(self.epoch)
                } else {
                    Err(HALF_OPEN_RETRY_HINT.min(settings.open_for))
                }
            }
        };
        (admission, transition)
    }

    /// Open becomes HalfOpen lazily, when someone next asks.
    fn leave_open_if_due(&mut self, now: Instant) -> Option<Transition> {
        match self.phase {
            Phase::Open { until } if now >= until => Some(self.enter(
                Phase::HalfOpen {
                    admitted: 0,
                    recorded: 0,
                    faults: 0,
                },
                None,
            )),
            _ => None,
        }
    }

    fn record(
        &mut self,
        settings: &Settings,
        epoch: u64,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        if epoch != self.epoch {
            // Issued in an earlier phase: its outcome describes the downstream as it was.
            return None;
        }
        let fault = match outcome {
            Outcome::Success => false,
            Outcome::Fault => true,
            Outcome::Ignored => {
                if let Phase::HalfOpen { admitted, .. } = &mut self.phase {
                    // The trial slot goes to the next caller.
                    *admitted = admitted.saturating_sub(1);
                }
                return None;
            }
        };
        match &mut self.phase {
            Phase::Closed => {
                self.window.push(fault);
                let (faults, calls) = (self.window.faults, self.window.len);
                if calls >= settings.minimum_calls && settings.trips(faults, calls) {
                    let rate = percent(faults, calls);
                    let until = open_until(now, settings.open_for);
                    return Some(self.enter(Phase::Open { until }, Some(rate)));
                }
                None
            }
            // No permit is issued while open and entering Open bumps the epoch, so no current
            // permit can report here.
            Phase::Open { .. } => None,
            Phase::HalfOpen {
                recorded, faults, ..
            } => {
                *recorded += 1;
                *faults += u32::from(fault);
                if *recorded < settings.half_open_trials {
                    return None;
                }
                let (faults, calls) = (*faults as usize, *recorded as usize);
                let rate = percent(faults, calls);
                let next = if settings.trips(faults, calls) {
                    Phase::Open {
                        until: open_until(now, settings.open_for),
                    }
                } else {
                    Phase::Closed
                };
                Some(self.enter(next, Some(rate)))
            }
        }
    }

    fn enter(&mut self, next: Phase, rate: Option<f64>) -> Transition {
        let from = self.phase.state();
        let to = next.state();
        if to == BreakerState::Closed {
            // Closing starts over: the faults that opened the breaker are history.
            self.window.clear();
        }
        self.phase = next;
        self.epoch += 1;
        Transition {
            from,
            to,
            failure_rate: rate,
        }
    }
}

fn percent(faults: usize, calls: usize) -> f64 {
    if calls == 0 {
        0.0
    } else {
        faults as f64 * 100.0 / calls as f64
    }
}

fn open_until(now: Instant, open_for: Duration) -> Instant {
    // `open_for` is at most an hour, so this only saturates on a clock near its end of time.
    now.checked_add(open_for).unwrap_or(now)
}

/// The last `capacity` outcomes, oldest overwritten first.
struct Window {
    /// `true` is a fault.
    outcomes: Vec<bool>,
    /// Where the next outcome goes.
    next: usize,
    len: usize,
    faults: usize,
}

impl Window {
    fn new(capacity: usize) -> Self {
        Window {
            outcomes: vec![false; capacity],
            next: 0,
            len: 0,
            faults: 0,
        }
    }

    fn push(&mut self, fault: bool) {
        let capacity = self.outcomes.len();
        if self.len == capacity {
            // Full: the slot at `next` holds the oldest outcome, which leaves the window.
            if self.outcomes[self.next] {
                self.faults -= 1;
            }
        } else {
            self.len += 1;
        }
        self.outcomes[self.next] = fault;
        self.faults += usize::from(fault);
        self.next = (self.next + 1) % capacity;
    }

    fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
        self.faults = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn breaker(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker::new("catalog", config)
    }

    fn state_at(breaker: &CircuitBreaker, now: Instant) -> BreakerState {
        let mut machine = breaker.lock();
        machine.leave_open_if_due(now);
        machine.phase.state()
    }

    /// Makes one call per outcome at `now`; `true` is a fault.
    fn calls(breaker: &CircuitBreaker, faults: &[bool], now: Instant) {
        for &fault in faults {
            let permit = breaker
                .try_acquire_at(now)
                .expect("the breaker should admit this call");
            let outcome = if fault {
                Outcome::Fault
            } else {
                Outcome::Success
            };
            permit.finish(outcome, now);
        }
    }

    fn repeat(fault: bool, count: usize) -> Vec<bool> {
        vec![fault; count]
    }

    fn mixed(faults: usize, successes: usize) -> Vec<bool> {
        let mut outcomes = repeat(true, faults);
        outcomes.extend(repeat(false, successes));
        outcomes
    }

    /// A breaker with the default configuration, opened at `t0` by 20 faults.
    fn opened() -> (CircuitBreaker, Instant) {
        let breaker = breaker(BreakerConfig::default());
        let t0 = Instant::now();
        calls(&breaker, &repeat(true, 20), t0);
        assert_eq!(state_at(&breaker, t0), BreakerState::Open);
        (breaker, t0)
    }

    #[test]
    fn stays_closed_below_minimum_calls_even_when_every_call_fails() {
        let breaker = breaker(BreakerConfig::default());
        let now = Instant::now();
        calls(&breaker, &repeat(true, 19), now);
        assert_eq!(state_at(&breaker, now), BreakerState::Closed);
        calls(&breaker, &[true], now);
        assert_eq!(state_at(&breaker, now), BreakerState::Open);
    }

    #[test]
    fn opens_at_the_failure_rate_threshold_from_minimum_calls_on() {
        // (faults, successes, expected): the window (40) is never full here, so this also
        // shows evaluation starts at minimum_calls.
        let cases = [
            (12, 8, BreakerState::Open),    // 60 % of 20
            (11, 9, BreakerState::Closed),  // 55 % of 20
            (0, 20, BreakerState::Closed),  // healthy
            (20, 0, BreakerState::Open),    // all faults
            (18, 12, BreakerState::Open),   // 60 % of 30
            (17, 13, BreakerState::Closed), // 56.7 % of 30
        ];
        for (faults, successes, expected) in cases {
            let breaker = breaker(BreakerConfig::default());
            let now = Instant::now();
            // Successes first so the rate only reaches its final value on the last call.
            let mut outcomes = repeat(false, successes);
            outcomes.extend(repeat(true, faults));
            calls(&breaker, &outcomes, now);
            assert_eq!(
                state_at(&breaker, now),
                expected,
                "{faults} faults, {successes} successes"
            );
        }
    }

    #[test]
    fn the_window_slides_over_the_latest_calls() {
        let now = Instant::now();

        // Recent faults count fully once older successes leave the window: 40 successes,
        // then 24 faults is 24/40 = 60 % of the window (but only 37.5 % of all calls).
        let breaker_a = breaker(BreakerConfig::default());
        calls(&breaker_a, &repeat(false, 40), now);
        calls(&breaker_a, &repeat(true, 23), now);
        assert_eq!(state_at(&breaker_a, now), BreakerState::Closed);
        calls(&breaker_a, &[true], now);
        assert_eq!(state_at(&breaker_a, now), BreakerState::Open);

        // Old faults leave the window: 5 faults pushed out by successes no longer count.
        let config = BreakerConfig {
            window: 10,
            minimum_calls: 10,
            ..BreakerConfig::default()
        };
        let breaker_b = breaker(config);
        calls(&breaker_b, &mixed(5, 5), now); // 50 %
        calls(&breaker_b, &repeat(false, 5), now); // the 5 faults leave: 0 %
        calls(&breaker_b, &repeat(true, 5), now); // 50 % again, not 100 %
        assert_eq!(state_at(&breaker_b, now), BreakerState::Closed);
        calls(&breaker_b, &[true], now); // 6 of the last 10
        assert_eq!(state_at(&breaker_b, now), BreakerState::Open);
    }

    #[test]
    fn ignored_calls_do_not_count() {
        let breaker = breaker(BreakerConfig::default());
        let now = Instant::now();
        for index in 0..20 {
            let permit = breaker.try_acquire_at(now).expect("closed");
            if index % 2 == 0 {
                permit.ignore();
            } else {
                drop(permit);
            }
        }
        // Were the ignored calls counted, 19 more calls would reach minimum_calls (and 12
        // faults in 39 would stay under 60 %).
        calls(&breaker, &mixed(12, 7), now);
        assert_eq!(state_at(&breaker, now), BreakerState::Closed);
        calls(&breaker, &[false], now); // 12 of 20
        assert_eq!(state_at(&breaker, now), BreakerState::Open);
    }

    #[test]
    fn an_open_breaker_rejects_at_once_and_says_when_to_come_back() {
        let (breaker, t0) = opened();
        let rejection = breaker.try_acquire_at(t0).expect_err("open");
        assert_eq!(rejection.name, "catalog");
        assert_eq!(rejection.retry_after, 10 * SECOND);
        assert_eq!(rejection.to_string(), "circuit breaker `catalog` is open");

        let rejection = breaker.try_acquire_at(t0 + 4 * SECOND).expect_err("open");
        assert_eq!(rejection.retry_after, 6 * SECOND);
        assert_eq!(state_at(&breaker, t0 + 9 * SECOND), BreakerState::Open);
    }

    #[test]
    fn after_the_open_period_exactly_the_trial_calls_are_admitted() {
        let (breaker, t0) = opened();
        let later = t0 + 10 * SECOND;
        assert_eq!(state_at(&breaker, later), BreakerState::HalfOpen);

        let trials: Vec<CallPermit> = (0..10)
            .map(|trial| {
                breaker
                    .try_acquire_at(later)
                    .unwrap_or_else(|_| panic!("trial {trial} should be admitted"))
            })
            .collect();
        let rejection = breaker.try_acquire_at(later).expect_err("11th trial");
        assert_eq!(rejection.retry_after, SECOND);
        assert_eq!(state_at(&breaker, later), BreakerState::HalfOpen);

        // An ignored trial frees its slot for one more caller, no more.
        let mut trials = trials;
        trials.pop().expect("ten trials").ignore();
        let replacement = breaker.try_acquire_at(later).expect("freed slot");
        assert!(breaker.try_acquire_at(later).is_err());
        drop(replacement);
        assert!(breaker.try_acquire_at(later).is_ok());
    }

    #[test]
    fn trial_outcomes_decide_between_closed_and_open() {
        // (trial faults, trial successes, expected)
        let cases = [
            (0, 10, BreakerState::Closed),
            (5, 5, BreakerState::Closed),
            (6, 4, BreakerState::Open),
            (10, 0, BreakerState::Open),
        ];
        for (faults, successes, expected) in cases {
            let (breaker, t0) = opened();
            let later = t0 + 10 * SECOND;
            // Successes first: the breaker must wait for all ten trials before deciding.
            let mut outcomes = repeat(false, successes);
            outcomes.extend(repeat(true, faults));
            calls(&breaker, &outcomes[..9], later);
            assert_eq!(state_at(&breaker, later), BreakerState::HalfOpen);
            calls(&breaker, &outcomes[9..], later);
            assert_eq!(state_at(&breaker, later), expected, "{faults} trial faults");

            if expected == BreakerState::Open {
                // Open again for a full period from the deciding call.
                let rejection = breaker.try_acquire_at(later).expect_err("open again");
                assert_eq!(rejection.retry_after, 10 * SECOND);
                assert_eq!(
                    state_at(&breaker, later + 10 * SECOND),
                    BreakerState::HalfOpen
                );
            } else {
                // Closed with a clean window: the 20 faults that opened it are forgotten.
                calls(&breaker, &repeat(true, 19), later);
                assert_eq!(state_at(&breaker, later), BreakerState::Closed);
            }
        }
    }

    #[test]
    fn calls_from_an_earlier_phase_neither_vote_nor_free_trial_slots() {
        let breaker = breaker(BreakerConfig::default());
        let t0 = Instant::now();
        let slow_call = breaker.try_acquire_at(t0).expect("closed");
        calls(&breaker, &repeat(true, 20), t0);
        let later = t0 + 10 * SECOND;
        let trials: Vec<CallPermit> = (0..10)
            .map(|_| breaker.try_acquire_at(later).expect("trial"))
            .collect();

        // The slow call from Closed ends now: it is neither a trial outcome nor a freed slot.
        slow_call.finish(Outcome::Success, later);
        assert!(breaker.try_acquire_at(later).is_err());
        for trial in trials.into_iter().take(9) {
            trial.finish(Outcome::Success, later);
        }
        assert_eq!(state_at(&breaker, later), BreakerState::HalfOpen);
    }

    #[test]
    fn state_moves_an_expired_open_breaker_to_half_open() {
        let breaker = breaker(BreakerConfig {
            open_for_ms: 1,
            ..BreakerConfig::default()
        });
        let t0 = Instant::now();
        calls(&breaker, &repeat(true, 20), t0);
        assert_eq!(state_at(&breaker, t0), BreakerState::Open);
        // Through the public accessor, on the real clock: 1 ms later it must be half-open.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while breaker.state() != BreakerState::HalfOpen {
            assert!(std::time::Instant::now() < deadline, "never half-open");
            std::thread::yield_now();
        }
        assert_eq!(breaker.name(), "catalog");
    }

    #[test]
    fn public_permits_record_outcomes() {
        let breaker = breaker(BreakerConfig {
            window: 4,
            minimum_calls: 4,
            failure_rate_percent: 50,
            ..BreakerConfig::default()
        });
        breaker.try_acquire().expect("closed").success();
        breaker.try_acquire().expect("closed").fault();
        breaker.try_acquire().expect("closed").ignore();
        breaker.try_acquire().expect("closed").success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.try_acquire().expect("closed").fault(); // 2 of 4
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.try_acquire().is_err());
    }

    #[test]
    fn metrics_follow_every_transition() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let breaker = CircuitBreaker::new("metered", BreakerConfig::default());
            let t0 = Instant::now();
            assert!(
                handle
                    .render()
                    .contains(r#"pillivery_circuit_breaker_state{breaker="metered"} 0"#)
            );
            calls(&breaker, &repeat(true, 20), t0);
            assert!(breaker.try_acquire_at(t0).is_err());
            let rendered = handle.render();
            for line in [
                r#"pillivery_circuit_breaker_state{breaker="metered"} 1"#,
                r#"pillivery_circuit_breaker_transitions_total{breaker="metered",from="closed",to="open"} 1"#,
                r#"pillivery_circuit_breaker_rejected_total{breaker="metered"} 1"#,
                r#"pillivery_circuit_breaker_calls_total{breaker="metered",outcome="fault"} 20"#,
            ] {
                assert!(rendered.contains(line), "missing {line} in\n{rendered}");
            }
            let later = t0 + 10 * SECOND;
            calls(&breaker, &repeat(false, 9), later);
            let rendered = handle.render();
            assert!(rendered.contains(r#"pillivery_circuit_breaker_state{breaker="metered"} 2"#));
            calls(&breaker, &[false], later);
            let rendered = handle.render();
            for line in [
                r#"pillivery_circuit_breaker_state{breaker="metered"} 0"#,
                r#"pillivery_circuit_breaker_transitions_total{breaker="metered",from="open",to="half_open"} 1"#,
                r#"pillivery_circuit_breaker_transitions_total{breaker="metered",from="half_open",to="closed"} 1"#,
                r#"pillivery_circuit_breaker_calls_total{breaker="metered",outcome="success"} 10"#,
            ] {
                assert!(rendered.contains(line), "missing {line} in\n{rendered}");
            }
        });
    }

    #[test]
    fn config_defaults_are_the_originals_and_bad_values_are_refused() {
        let defaults = BreakerConfig::default();
        assert_eq!(
            (
                defaults.window,
                defaults.minimum_calls,
                defaults.failure_rate_percent,
                defaults.open_for_ms,
                defaults.half_open_trials
            ),
            (40, 20, 60, 10_000, 10)
        );
        assert_eq!(defaults.validate(), Ok(()));

        type Spoil = fn(&mut BreakerConfig);
        let bad: [(&str, Spoil); 8] = [
            ("window", |c| c.window = 0),
            ("window", |c| c.window = MAX_WINDOW + 1),
            ("minimum_calls", |c| c.minimum_calls = 0),
            ("minimum_calls", |c| c.minimum_calls = 41),
            ("failure_rate_percent", |c| c.failure_rate_percent = 0),
            ("failure_rate_percent", |c| c.failure_rate_percent = 101),
            ("open_for_ms", |c| c.open_for_ms = 0),
            ("half_open_trials", |c| c.half_open_trials = 0),
        ];
        for (field, spoil) in bad {
            let mut config = BreakerConfig::default();
            spoil(&mut config);
            let error = config.validate().expect_err(field);
            assert!(error.contains(field), "{error}");
        }
    }

    #[test]
    fn config_reads_partial_input_and_refuses_unknown_keys() {
        let config: BreakerConfig =
            serde_json::from_str(r#"{"window": 100, "minimum_calls": 50}"#).expect("valid");
        assert_eq!(config.window, 100);
        assert_eq!(config.minimum_calls, 50);
        assert_eq!(config.failure_rate_percent, 60);
        assert!(serde_json::from_str::<BreakerConfig>(r#"{"windw": 100}"#).is_err());
    }

    #[test]
    fn the_window_overwrites_its_oldest_outcome() {
        let mut window = Window::new(3);
        for fault in [true, true, false] {
            window.push(fault);
        }
        assert_eq!((window.len, window.faults), (3, 2));
        window.push(false); // drops the first fault
        assert_eq!((window.len, window.faults), (3, 1));
        window.push(true); // drops the second fault
        assert_eq!((window.len, window.faults), (3, 1));
        window.clear();
        assert_eq!((window.len, window.faults), (0, 0));
    }
}
