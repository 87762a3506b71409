//! The order service's configuration: defaults in code, then an optional file, then
//! `PILLIVERY_…` variables; validated before any port is bound.

use pillivery_platform::auth::{TokenConfig, VerificationKey};
use pillivery_platform::client::UpstreamConfig;
use pillivery_platform::config::ServiceConfig;
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::events::EventsConfig;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::telemetry::TelemetryConfig;
use pillivery_platform::time::BusinessCalendar;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    /// How access tokens are checked; the same values as the user service and the gateway.
    pub tokens: TokenConfig,
    /// The public keys that verify the bearer token of every customer call, as a JWKS document
    /// (`{"keys":[...]}`). Empty: every customer call is refused as unauthenticated.
    pub jwks: String,
    /// The catalog (`CatalogInternalService`): live prices and order snapshots. Its policy's
    /// `default_deadline_ms` is the deadline of each lookup.
    pub catalog: UpstreamConfig,
    /// The shop's time zone: billing dates are dates there.
    pub business_time_zone: BusinessCalendar,
    /// An order still unpaid this long after its creation is cancelled.
    pub unpaid_order_timeout_seconds: u64,
    /// How often the unpaid-order sweep runs (every replica runs it; it is idempotent).
    pub unpaid_sweep_interval_ms: u64,
    /// The event bus, relay and consumer.
    pub events: EventsConfig,
    /// Redis for the relay's lock when replicas must agree; unset: an in-process lock (one
    /// replica, the embedded fleet).
    pub redis_url: Option<String>,
    pub redis_key_prefix: String,
}

impl Default for OrderConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::new("sqlite://./data/order.db?mode=rwc"),
            tokens: TokenConfig::default(),
            jwks: String::new(),
            catalog: UpstreamConfig::new("dns://catalog:50051"),
            business_time_zone: BusinessCalendar::default(),
            unpaid_order_timeout_seconds: 30 * 60,
            unpaid_sweep_interval_ms: 60_000,
            events: EventsConfig::default(),
            redis_url: None,
            redis_key_prefix: "pillivery:order".into(),
        }
    }
}

impl ServiceConfig for OrderConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.database.validate()?;
        self.catalog.validate("catalog")?;
        self.events.validate()?;
        if self.unpaid_order_timeout_seconds == 0 {
            return Err("unpaid_order_timeout_seconds must be at least 1".into());
        }
        if !(10..=3_600_000).contains(&self.unpaid_sweep_interval_ms) {
            return Err("unpaid_sweep_interval_ms must be between 10 and 3600000".into());
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err("redis_url must be a redis:// or rediss:// URL".into());
        }
        self.verification_keys()?;
        Ok(())
    }
}

impl OrderConfig {
    /// The keys of [`jwks`](OrderConfig::jwks).
    pub fn verification_keys(&self) -> Result<Vec<VerificationKey>, String> {
        verification_keys_from_jwks(&self.jwks)
    }

    pub fn unpaid_order_timeout(&self) -> chrono::Duration {
        chrono::Duration::seconds(
            i64::try_from(self.unpaid_order_timeout_seconds).unwrap_or(i64::MAX / 1000),
        )
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

    fn valid() -> OrderConfig {
        OrderConfig {
            catalog: UpstreamConfig::new("http://127.0.0.1:50052"),
            ..OrderConfig::default()
        }
    }

    #[test]
    fn a_config_with_a_catalog_is_valid() {
        assert_eq!(valid().validate(), Ok(()));
        assert_eq!(OrderConfig::default().validate(), Ok(()));
        assert_eq!(
            valid().unpaid_order_timeout(),
            chrono::Duration::minutes(30)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases: Vec<(OrderConfig, &str)> = vec![
            (
                OrderConfig {
                    catalog: UpstreamConfig::default(),
                    ..valid()
                },
                "catalog",
            ),
            (
                OrderConfig {
                    unpaid_order_timeout_seconds: 0,
                    ..valid()
                },
                "unpaid_order_timeout_seconds",
            ),
            (
                OrderConfig {
                    unpaid_sweep_interval_ms: 0,
                    ..valid()
                },
                "unpaid_sweep_interval_ms",
            ),
            (
                OrderConfig {
                    jwks: "[]".into(),
                    ..valid()
                },
                "jwks",
            ),
            (
                OrderConfig {
                    redis_url: Some("http://x".into()),
                    ..valid()
                },
                "redis_url",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().expect_err(key);
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn the_time_zone_is_read_by_name() {
        let config: OrderConfig =
            serde_json::from_value(serde_json::json!({"business_time_zone": "UTC"})).unwrap();
        assert_eq!(config.business_time_zone.to_string(), "UTC");
        assert!(
            serde_json::from_value::<OrderConfig>(
                serde_json::json!({"business_time_zone": "Mars/Base"})
            )
            .is_err()
        );
    }
}
