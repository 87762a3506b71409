//! Fault injection: the faults currently installed, the clock of their ramp, and the random
//! draws that decide what happens to each KakaoPay call.
//!
//! Deciding is separate from acting: [`Faults::decide`] returns a [`FaultDecision`] (a delay and
//! at most one [`FaultOutcome`]) and the HTTP layer carries it out, so the odds and the ramp are
//! unit-tested here without a server or a clock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::{Endpoint, FaultConfig, RampConfig};

/// What happens to one call besides its latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOutcome {
    /// Served normally.
    None,
    /// Answered 500 without doing anything.
    ServerError,
    /// Held without doing anything, then answered 504.
    Timeout,
    /// Done (and recorded), then held before the answer.
    TimeoutAfterCommit,
    /// A subscription charge declined with -782 (only drawn for [`Endpoint::Subscription`]).
    Decline,
}

/// The fate of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultDecision {
    pub latency: Duration,
    pub outcome: FaultOutcome,
    /// How long a timeout holds the call.
    pub hold: Duration,
}

/// What `GET /sandbox/faults` answers: the installed faults and where the ramp stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultStatus {
    pub faults: FaultConfig,
    /// The 5xx rate right now (the ramp's when one is set).
    pub current_server_error_rate: f64,
    /// Milliseconds since these faults were installed (the ramp's clock).
    pub installed_ms_ago: u64,
    /// Calls being held by a timeout right now (a test can wait for its call to be held).
    pub held_calls: u64,
}

struct Installed {
    config: FaultConfig,
    since: Instant,
    rng: StdRng,
}

/// The faults in force, replaceable at run time. The lock is held only to draw.
pub struct Faults {
    installed: Mutex<Installed>,
    held_calls: AtomicU64,
}

/// Counts a call as held while it lives.
pub struct Held<'a>(&'a AtomicU64);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        let rng = rng_for(config.seed);
        Self {
            installed: Mutex::new(Installed {
                config,
                since: Instant::now(),
                rng,
            }),
            held_calls: AtomicU64::new(0),
        }
    }

    /// Marks a call as held by a timeout until the returned guard is dropped.
    pub fn hold(&self) -> Held<'_> {
        self.held_calls.fetch_add(1, Ordering::AcqRel);
        Held(&self.held_calls)
    }

    /// Replaces the faults and restarts the ramp's clock. A config with a seed reseeds the
    /// draws; one without keeps the current generator.
    pub fn install(&self, config: FaultConfig) {
        let mut installed = lock(&self.installed);
        if let Some(seed) = config.seed {
            installed.rng = StdRng::seed_from_u64(seed);
        }
        installed.config = config;
        installed.since = Instant::now();
    }

    pub fn status(&self) -> FaultStatus {
        let installed = lock(&self.installed);
        let elapsed = installed.since.elapsed();
        FaultStatus {
            faults: installed.config.clone(),
            current_server_error_rate: server_error_rate(&installed.config, elapsed),
            installed_ms_ago: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            held_calls: self.held_calls.load(Ordering::Acquire),
        }
    }

    /// Draws the fate of one call to `endpoint`.
    pub fn decide(&self, endpoint: Endpoint) -> FaultDecision {
        let mut installed = lock(&self.installed);
        let elapsed = installed.since.elapsed();
        let Installed { config, rng, .. } = &mut *installed;
        decide(config, elapsed, endpoint, rng)
    }
}

fn rng_for(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

/// A poisoned lock only means another request panicked mid-draw; the fault state is still a
/// valid value, so keep serving rather than failing every later call.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The 5xx rate `elapsed` after `config` was installed.
pub fn server_error_rate(config: &FaultConfig, elapsed: Duration) -> f64 {
    match &config.ramp {
        None => config.server_error_rate,
        Some(ramp) => ramp_rate(ramp, elapsed),
    }
}

/// Linear from `from_rate` to `to_rate` over `over_seconds`, then flat.
pub fn ramp_rate(ramp: &RampConfig, elapsed: Duration) -> f64 {
    if ramp.over_seconds == 0 {
        return ramp.to_rate;
    }
    let progress = (elapsed.as_secs_f64() / ramp.over_seconds as f64).min(1.0);
    ramp.from_rate + (ramp.to_rate - ramp.from_rate) * progress
}

fn decide(
    config: &FaultConfig,
    elapsed: Duration,
    endpoint: Endpoint,
    rng: &mut StdRng,
) -> FaultDecision {
    let hold = Duration::from_millis(config.timeout_hold_ms);
    if !config.endpoints.contains(endpoint) {
        return FaultDecision {
            latency: Duration::ZERO,
            outcome: FaultOutcome::None,
            hold,
        };
    }
    let latency_ms = if config.latency_max_ms > config.latency_min_ms {
        rng.random_range(config.latency_min_ms..=config.latency_max_ms)
    } else {
        config.latency_min_ms
    };
    // One draw against cumulative thresholds keeps the outcomes exclusive and each rate exact.
    let draw: f64 = rng.random();
    let server_error = server_error_rate(config, elapsed);
    let timeout = server_error + config.timeout_rate;
    let timeout_after_commit = timeout + config.timeout_after_commit_rate;
    let decline = timeout_after_commit + config.decline_rate;
    let outcome = if draw < server_error {
        FaultOutcome::ServerError
    } else if draw < timeout {
        FaultOutcome::Timeout
    } else if draw < timeout_after_commit {
        // A lookup changes nothing, so "after commit" is an ordinary timeout for it.
        if endpoint == Endpoint::Order {
            FaultOutcome::Timeout
        } else {
            FaultOutcome::TimeoutAfterCommit
        }
    } else if endpoint == Endpoint::Subscription && draw < decline {
        FaultOutcome::Decline
    } else {
        FaultOutcome::None
    };
    FaultDecision {
        latency: Duration::from_millis(latency_ms),
        outcome,
        hold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EndpointSet;

    fn tally(config: &FaultConfig, endpoint: Endpoint, calls: usize) -> [usize; 5] {
        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = [0; 5];
        for _ in 0..calls {
            let index = match decide(config, Duration::ZERO, endpoint, &mut rng).outcome {
                FaultOutcome::None => 0,
                FaultOutcome::ServerError => 1,
                FaultOutcome::Timeout => 2,
                FaultOutcome::TimeoutAfterCommit => 3,
                FaultOutcome::Decline => 4,
            };
            counts[index] += 1;
        }
        counts
    }

    #[test]
    fn no_faults_means_every_call_is_served_at_once() {
        let config = FaultConfig::default();
        let mut rng = StdRng::seed_from_u64(1);
        for endpoint in Endpoint::ALL {
            let decision = decide(&config, Duration::ZERO, endpoint, &mut rng);
            assert_eq!(decision.outcome, FaultOutcome::None);
            assert_eq!(decision.latency, Duration::ZERO);
        }
    }

    #[test]
    fn rates_are_exclusive_and_close_to_their_configured_share() {
        let config = FaultConfig {
            server_error_rate: 0.1,
            timeout_rate: 0.05,
            timeout_after_commit_rate: 0.05,
            decline_rate: 0.2,
            ..FaultConfig::default()
        };
        let [none, server, timeout, after, decline] =
            tally(&config, Endpoint::Subscription, 20_000);
        let share = |count: usize| count as f64 / 20_000.0;
        assert!((share(server) - 0.1).abs() < 0.015, "{server}");
        assert!((share(timeout) - 0.05).abs() < 0.01, "{timeout}");
        assert!((share(after) - 0.05).abs() < 0.01, "{after}");
        assert!((share(decline) - 0.2).abs() < 0.015, "{decline}");
        assert!((share(none) - 0.6).abs() < 0.02, "{none}");
    }

    #[test]
    fn declines_only_hit_subscription_charges_and_lookups_never_commit() {
        let config = FaultConfig {
            decline_rate: 1.0,
            ..FaultConfig::default()
        };
        assert_eq!(tally(&config, Endpoint::Approve, 100), [100, 0, 0, 0, 0]);
        assert_eq!(
            tally(&config, Endpoint::Subscription, 100),
            [0, 0, 0, 0, 100]
        );
        let config = FaultConfig {
            timeout_after_commit_rate: 1.0,
            ..FaultConfig::default()
        };
        assert_eq!(tally(&config, Endpoint::Order, 100), [0, 0, 100, 0, 0]);
        assert_eq!(tally(&config, Endpoint::Cancel, 100), [0, 0, 0, 100, 0]);
    }

    #[test]
    fn endpoints_outside_the_set_are_untouched() {
        let config = FaultConfig {
            server_error_rate: 1.0,
            latency_min_ms: 500,
            endpoints: EndpointSet::of(&[Endpoint::Approve]),
            ..FaultConfig::default()
        };
        assert_eq!(tally(&config, Endpoint::Ready, 50), [50, 0, 0, 0, 0]);
        assert_eq!(tally(&config, Endpoint::Approve, 50), [0, 50, 0, 0, 0]);
        let mut rng = StdRng::seed_from_u64(3);
        let decision = decide(&config, Duration::ZERO, Endpoint::Ready, &mut rng);
        assert_eq!(decision.latency, Duration::ZERO);
    }

    #[test]
    fn latency_is_fixed_or_within_its_range() {
        let mut rng = StdRng::seed_from_u64(5);
        let fixed = FaultConfig {
            latency_min_ms: 120,
            ..FaultConfig::default()
        };
        let decision = decide(&fixed, Duration::ZERO, Endpoint::Ready, &mut rng);
        assert_eq!(decision.latency, Duration::from_millis(120));
        let range = FaultConfig {
            latency_min_ms: 10,
            latency_max_ms: 20,
            ..FaultConfig::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let latency = decide(&range, Duration::ZERO, Endpoint::Ready, &mut rng).latency;
            assert!((10..=20).contains(&latency.as_millis()), "{latency:?}");
            seen.insert(latency.as_millis());
        }
        assert_eq!(seen.len(), 11, "every value of the range is drawn");
    }

    #[test]
    fn the_ramp_moves_linearly_then_stays() {
        let ramp = RampConfig {
            from_rate: 0.1,
            to_rate: 0.75,
            over_seconds: 100,
        };
        let at = |seconds: f64| ramp_rate(&ramp, Duration::from_secs_f64(seconds));
        assert!((at(0.0) - 0.1).abs() < 1e-9);
        assert!((at(50.0) - 0.425).abs() < 1e-9);
        assert!((at(100.0) - 0.75).abs() < 1e-9);
        assert!((at(1_000.0) - 0.75).abs() < 1e-9);
        let down = RampConfig {
            from_rate: 1.0,
            to_rate: 0.0,
            over_seconds: 10,
        };
        assert!((ramp_rate(&down, Duration::from_secs(5)) - 0.5).abs() < 1e-9);
        let at_once = RampConfig {
            from_rate: 0.0,
            to_rate: 0.3,
            over_seconds: 0,
        };
        assert_eq!(ramp_rate(&at_once, Duration::ZERO), 0.3);
    }

    #[test]
    fn a_ramp_replaces_the_plain_server_error_rate() {
        let config = FaultConfig {
            server_error_rate: 1.0,
            ramp: Some(RampConfig {
                from_rate: 0.0,
                to_rate: 0.0,
                over_seconds: 10,
            }),
            ..FaultConfig::default()
        };
        assert_eq!(server_error_rate(&config, Duration::from_secs(3)), 0.0);
        assert_eq!(tally(&config, Endpoint::Approve, 100), [100, 0, 0, 0, 0]);
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let config = FaultConfig {
            server_error_rate: 0.5,
            seed: Some(99),
            ..FaultConfig::default()
        };
        let run = || {
            let faults = Faults::new(config.clone());
            (0..64)
                .map(|_| faults.decide(Endpoint::Approve).outcome)
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        assert!(first.contains(&FaultOutcome::ServerError));
        assert!(first.contains(&FaultOutcome::None));
        // Installing the same seed again restarts the same sequence.
        let faults = Faults::new(config.clone());
        let _ = faults.decide(Endpoint::Approve);
        faults.install(config.clone());
        let again: Vec<_> = (0..64)
            .map(|_| faults.decide(Endpoint::Approve).outcome)
            .collect();
        assert_eq!(first, again);
    }
}
