//! The scheduler's configuration: defaults here, then an optional file, then `PILLIVERY_…`
//! variables; validated before any port is bound.

use std::time::Duration;

use pillivery_platform::auth::{TokenConfig, VerificationKey};
use pillivery_platform::client::UpstreamConfig;
use pillivery_platform::config::ServiceConfig;
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::events::EventsConfig;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::telemetry::TelemetryConfig;
use pillivery_platform::time::BusinessCalendar;
use serde::{Deserialize, Serialize};

use crate::domain::RetryPolicy;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    /// The event bus; the scheduler consumes the `order` stream as group `scheduler`.
    pub events: EventsConfig,
    /// How access tokens are checked (the admin RPC); the same values as the gateway's.
    pub tokens: TokenConfig,
    /// The public keys that verify the bearer token forwarded to the admin RPC, as a JWKS
    /// document. Empty: every admin call is refused as unauthenticated.
    pub jwks: String,
    /// The order service (subscriptions, renewals, failures).
    pub order: UpstreamConfig,
    /// The payment service (charges).
    pub payment: UpstreamConfig,
    /// Business dates are taken in this zone (IANA name).
    pub business_time_zone: BusinessCalendar,
    pub billing: BillingConfig,
    /// The retry ladder of failed renewals (SPEC section 7).
    pub retry: RetryPolicy,
}

/// Pace and limits of billing runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// Run the loop at all (off: only admin `asOf` runs bill).
    pub loop_enabled: bool,
    /// Local hour (0–23) from which the loop bills the day's jobs.
    pub billing_hour: u32,
    /// How often the loop looks for due jobs.
    pub loop_interval_ms: u64,
    /// How long a claim holds a job; a crashed replica's jobs are taken over after it.
    pub lease_ms: u64,
    /// Jobs processed at once by one replica (charges in flight).
    pub max_in_flight: usize,
    /// Deadline of one call to the order service, retries included.
    pub order_deadline_ms: u64,
    /// Deadline of one charge, retries included (the PG may take seconds).
    pub charge_deadline_ms: u64,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            loop_enabled: true,
            billing_hour: 2,
            loop_interval_ms: 60_000,
            lease_ms: 120_000,
            max_in_flight: 64,
            order_deadline_ms: 3_000,
            charge_deadline_ms: 15_000,
        }
    }
}

impl BillingConfig {
    pub fn loop_interval(&self) -> Duration {
        Duration::from_millis(self.loop_interval_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn order_deadline(&self) -> Duration {
        Duration::from_millis(self.order_deadline_ms)
    }

    pub fn charge_deadline(&self) -> Duration {
        Duration::from_millis(self.charge_deadline_ms)
    }

    /// The longest one step of a job can take while its lease runs: a read, the charge with
    /// its immediate retries, and the record afterwards.
    pub fn longest_step(&self, policy: &RetryPolicy) -> u64 {
        let charges = u64::from(policy.immediate_fault_retries) + 1;
        self.order_deadline_ms
            .saturating_mul(2)
            .saturating_add(self.charge_deadline_ms.saturating_mul(charges))
    }

    fn validate(&self, policy: &RetryPolicy) -> Result<(), String> {
        if self.billing_hour > 23 {
            return Err("billing.billing_hour must be between 0 and 23".into());
        }
        if !(10..=86_400_000).contains(&self.loop_interval_ms) {
            return Err("billing.loop_interval_ms must be between 10 and 86400000".into());
        }
        if !(1..=10_000).contains(&self.max_in_flight) {
            return Err("billing.max_in_flight must be between 1 and 10000".into());
        }
        if !(1..=60_000).contains(&self.order_deadline_ms) {
            return Err("billing.order_deadline_ms must be between 1 and 60000".into());
        }
        if !(1..=120_000).contains(&self.charge_deadline_ms) {
            return Err("billing.charge_deadline_ms must be between 1 and 120000".into());
        }
        // A lease that can lapse while its holder is still inside one step would let a second
        // replica work the same job at the same time (safe for money, wasteful and confusing).
        let longest = self.longest_step(policy);
        if self.lease_ms <= longest || self.lease_ms > 3_600_000 {
            return Err(format!(
                "billing.lease_ms must exceed one job step ({longest} ms: 2 × order_deadline_ms + \
                 charge_deadline_ms × (1 + retry.immediate_fault_retries)) and be at most 3600000"
            ));
        }
        Ok(())
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::new("sqlite://./data/scheduler.db?mode=rwc"),
            events: EventsConfig::default(),
            tokens: TokenConfig::default(),
            jwks: String::new(),
            order: UpstreamConfig::new("dns://order:50051"),
            payment: UpstreamConfig::new("dns://payment:50051"),
            business_time_zone: BusinessCalendar::default(),
            billing: BillingConfig::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl ServiceConfig for SchedulerConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.database.validate()?;
        self.events
            .validate()
            .map_err(|error| format!("events: {error}"))?;
        self.verification_keys()?;
        self.order.validate("order")?;
        self.payment.validate("payment")?;
        self.retry.validate()?;
        self.billing.validate(&self.retry)
    }
}

impl SchedulerConfig {
    /// The keys of [`jwks`](SchedulerConfig::jwks).
    pub fn verification_keys(&self) -> Result<Vec<VerificationKey>, String> {
        verification_keys_from_jwks(&self.jwks)
    }
}

/// The keys of a JWKS document (`{"keys":[...]}`); blank text is no key at all.
pub fn verification_keys_from_jwks(text: &str) -> Result<Vec<VerificationKey>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("jwks is not JSON: {error}"))?;
    document["keys"]
        .as_array()
        .ok_or("jwks needs a `keys` array")?
        .iter()
        .map(|jwk| VerificationKey::from_jwk(jwk).map_err(|error| format!("jwks: {error}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bound_is_checked() {
        assert_eq!(SchedulerConfig::default().validate(), Ok(()));
        type Spoil = fn(&mut SchedulerConfig);
        let broken: [(&str, Spoil); 10] = [
            ("billing.billing_hour", |c| c.billing.billing_hour = 24),
            ("billing.loop_interval_ms", |c| {
                c.billing.loop_interval_ms = 0
            }),
            ("billing.max_in_flight", |c| c.billing.max_in_flight = 0),
            ("billing.order_deadline_ms", |c| {
                c.billing.order_deadline_ms = 0
            }),
            ("billing.charge_deadline_ms", |c| {
                c.billing.charge_deadline_ms = 0
            }),
            ("billing.lease_ms", |c| c.billing.lease_ms = 10_000),
            ("retry.interval_days", |c| c.retry.interval_days = 0),
            ("upstream `order`", |c| {
                c.order.target = "order:50051".into()
            }),
            ("upstream `payment`", |c| c.payment.target = String::new()),
            ("jwks", |c| c.jwks = "{".into()),
        ];
        for (key, breaks) in broken {
            let mut config = SchedulerConfig::default();
            breaks(&mut config);
            let error = config.validate().unwrap_err();
            assert!(error.starts_with(key), "{key}: {error}");
        }
    }

    #[test]
    fn the_lease_must_outlast_one_step() {
        let mut config = SchedulerConfig::default();
        let longest = config.billing.longest_step(&config.retry);
        assert_eq!(longest, 2 * 3_000 + 2 * 15_000);
        config.billing.lease_ms = longest;
        assert!(config.validate().is_err());
        config.billing.lease_ms = longest + 1;
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn partial_files_keep_the_other_defaults() {
        let config: SchedulerConfig = serde_json::from_str(
            r#"{"business_time_zone":"UTC","billing":{"billing_hour":5},"retry":{"retries":2}}"#,
        )
        .unwrap();
        assert_eq!(config.business_time_zone.to_string(), "UTC");
        assert_eq!(config.billing.billing_hour, 5);
        assert_eq!(config.billing.max_in_flight, 64);
        assert_eq!(config.retry.retries, 2);
        assert_eq!(config.retry.immediate_fault_retries, 1);
        assert!(serde_json::from_str::<SchedulerConfig>(r#"{"billing":{"nope":1}}"#).is_err());
    }
}
