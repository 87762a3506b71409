//! Keeping one unwell downstream from taking its callers down with it (SPEC §9).
//!
//! Every outgoing edge (gateway → service, service → service, payment → PG) combines:
//! - [`CircuitBreaker`]: stops calling a downstream that keeps failing, answering at once
//!   instead, and probes it with a few trial calls after a pause;
//! - [`Bulkhead`]: a concurrency limit per downstream, so a slow one cannot take every
//!   connection and task of the caller;
//! - [`RetryBudget`] and [`Backoff`]: retries that stay a bounded share of traffic and are
//!   spread out in time;
//! - [`EdgePolicy`]: the configuration of all of the above for one edge.
//!
//! These are guards, not tower layers, so the same pieces serve tonic calls made from
//! descriptors in the gateway and plain HTTP calls to the payment provider; `client` composes
//! them for gRPC. They never block: the breaker and budget use a short `std` mutex that is never
//! held across an `.await`, and only the bulkhead waits (asynchronously, bounded).

mod breaker;
mod bulkhead;
mod retry;

pub use breaker::{BreakerConfig, BreakerOpen, BreakerState, CallPermit, CircuitBreaker};
pub use bulkhead::{Bulkhead, BulkheadFull, BulkheadPermit};
pub use retry::{Backoff, RetryBudget};

use serde::{Deserialize, Serialize};

/// How one outgoing edge protects itself and its downstream. Defaults suit calls between
/// services in the same cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgePolicy {
    pub breaker: BreakerConfig,
    /// Calls in flight to this downstream at once (the bulkhead).
    pub max_concurrent: usize,
    /// How long a call waits for a bulkhead slot before failing; 0 fails at once.
    pub max_queue_wait_ms: u64,
    /// Extra attempts for a call that is safe to repeat; the retry budget limits them further.
    pub max_retries: u32,
    /// The ceiling of the first retry's jittered delay; it doubles with each retry.
    pub retry_base_ms: u64,
    /// The most any retry's delay can be.
    pub retry_max_ms: u64,
    /// How long establishing a connection may take.
    pub connect_timeout_ms: u64,
    /// The deadline for a call whose caller set none, covering all its attempts.
    pub default_deadline_ms: u64,
}

impl Default for EdgePolicy {
    fn default() -> Self {
        EdgePolicy {
            breaker: BreakerConfig::default(),
            max_concurrent: 64,
            max_queue_wait_ms: 50,
            max_retries: 2,
            retry_base_ms: 25,
            retry_max_ms: 250,
            connect_timeout_ms: 1000,
            default_deadline_ms: 5000,
        }
    }
}

impl EdgePolicy {
    /// Checks the rules; the error is one line for an operator.
    pub fn validate(&self) -> Result<(), String> {
        self.breaker.validate()?;
        if self.max_concurrent == 0 {
            return Err("max_concurrent must be at least 1".into());
        }
        if self.retry_base_ms > self.retry_max_ms {
            return Err(format!(
                "retry_base_ms ({}) must not exceed retry_max_ms ({})",
                self.retry_base_ms, self.retry_max_ms
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err("connect_timeout_ms must be at least 1".into());
        }
        if self.default_deadline_ms == 0 {
            return Err("default_deadline_ms must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid() {
        assert_eq!(EdgePolicy::default().validate(), Ok(()));
    }

    #[test]
    fn bad_policies_are_refused_naming_the_field() {
        type Spoil = fn(&mut EdgePolicy);
        let bad: [(&str, Spoil); 5] = [
            ("window", |p| p.breaker.window = 0),
            ("max_concurrent", |p| p.max_concurrent = 0),
            ("retry_base_ms", |p| p.retry_base_ms = 300),
            ("connect_timeout_ms", |p| p.connect_timeout_ms = 0),
            ("default_deadline_ms", |p| p.default_deadline_ms = 0),
        ];
        for (field, spoil) in bad {
            let mut policy = EdgePolicy::default();
            spoil(&mut policy);
            let error = policy.validate().expect_err(field);
            assert!(error.contains(field), "{error}");
        }
    }

    #[test]
    fn a_partial_policy_keeps_the_other_defaults() {
        let policy: EdgePolicy =
            serde_json::from_str(r#"{"max_concurrent": 8, "breaker": {"open_for_ms": 2000}}"#)
                .expect("valid policy");
        assert_eq!(policy.max_concurrent, 8);
        assert_eq!(policy.breaker.open_for_ms, 2000);
        assert_eq!(policy.breaker.window, 40);
        assert_eq!(policy.max_retries, 2);
        assert!(serde_json::from_str::<EdgePolicy>(r#"{"max_concurent": 8}"#).is_err());
    }
}
