//! The payment service's configuration: the PG (KakaoPay or the sandbox), where the PG sends
//! the buyer back (our public base URL), where we send the buyer next (the storefront), the
//! order service edge, token verification and the database.
//!
//! Switching from the sandbox to the real KakaoPay is one change: `provider.base_url` (plus its
//! secret key and CIDs), nothing else.

use std::time::Duration;

use pillivery_platform::auth::{TokenConfig, VerificationKey};
use pillivery_platform::client::UpstreamConfig;
use pillivery_platform::config::ServiceConfig;
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::events::EventsConfig;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};

pub use crate::provider::kakaopay::KakaoPayConfig;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    /// The PG: KakaoPay's address (or the sandbox's), secret key, CIDs and edge policy.
    pub provider: KakaoPayConfig,
    /// The origin the buyer's browser reaches the gateway at (`https://shop.example`); the PG
    /// redirects to `<public_base_url>/api/payments/orders/{orderId}/approve|cancel|fail`.
    pub public_base_url: String,
    /// Where the buyer lands after each outcome; `orderId=<id>` is added to the query.
    pub storefront: StorefrontConfig,
    /// The order service (`OrderInternalService`): amounts, ownership, PAID / REFUNDED.
    pub order: UpstreamConfig,
    /// How access tokens are checked; the same values as the user service and the gateway.
    pub tokens: TokenConfig,
    /// The public keys verifying the bearer token of the customer RPCs, as a JWKS document.
    /// Empty: every customer call answers 401 (the PG redirects need no token).
    pub jwks: String,
    /// How long a ready payment waits for the buyer before a new ready starts another one
    /// (KakaoPay: 15 minutes).
    pub ready_ttl_seconds: u64,
    /// How long one replica may own an approval, charge or refund before another may take it
    /// over; longer than the PG deadline, so a live call is never overtaken.
    pub lease_ms: u64,
    /// How often APPROVED / REFUNDED payments the order service has not confirmed yet are
    /// reported to it again.
    pub reconcile_interval_ms: u64,
    /// The deadline of the live PG lookup in `GetPayment`: short, the lookup is decoration.
    pub pg_lookup_timeout_ms: u64,
    /// The event bus and this service's consumer (refunds, subscription links and keys).
    pub events: EventsConfig,
}

/// The storefront pages the PG redirects end on.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorefrontConfig {
    pub success_url: String,
    pub cancel_url: String,
    pub fail_url: String,
}

impl Default for StorefrontConfig {
    fn default() -> Self {
        Self {
            success_url: "http://localhost:3000/payments/success".into(),
            cancel_url: "http://localhost:3000/payments/cancel".into(),
            fail_url: "http://localhost:3000/payments/fail".into(),
        }
    }
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::new("sqlite://./data/payment.db?mode=rwc"),
            provider: KakaoPayConfig::default(),
            public_base_url: "http://localhost:8080".into(),
            storefront: StorefrontConfig::default(),
            order: UpstreamConfig::new("dns://order:50051"),
            tokens: TokenConfig::default(),
            jwks: String::new(),
            ready_ttl_seconds: 15 * 60,
            lease_ms: 30_000,
            reconcile_interval_ms: 5_000,
            pg_lookup_timeout_ms: 1_500,
            events: EventsConfig::default(),
        }
    }
}

fn http_url(name: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("{name}: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{name} must be an http(s) URL"));
    }
    Ok(())
}

impl ServiceConfig for PaymentConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.database.validate()?;
        self.provider.validate()?;
        http_url("public_base_url", &self.public_base_url)?;
        http_url("storefront.success_url", &self.storefront.success_url)?;
        http_url("storefront.cancel_url", &self.storefront.cancel_url)?;
        http_url("storefront.fail_url", &self.storefront.fail_url)?;
        self.order.validate("order")?;
        self.verification_keys()?;
        if !(60..=86_400).contains(&self.ready_ttl_seconds) {
            return Err("ready_ttl_seconds must be between 60 and 86400".into());
        }
        if self.lease_ms <= self.provider.edge.default_deadline_ms {
            return Err(format!(
                "lease_ms must exceed provider.edge.default_deadline_ms ({})",
                self.provider.edge.default_deadline_ms
            ));
        }
        if !(10..=3_600_000).contains(&self.reconcile_interval_ms) {
            return Err("reconcile_interval_ms must be between 10 and 3600000".into());
        }
        if !(1..=60_000).contains(&self.pg_lookup_timeout_ms) {
            return Err("pg_lookup_timeout_ms must be between 1 and 60000".into());
        }
        self.events
            .validate()
            .map_err(|reason| format!("events: {reason}"))
    }
}

impl PaymentConfig {
    /// The keys of [`jwks`](PaymentConfig::jwks).
    pub fn verification_keys(&self) -> Result<Vec<VerificationKey>, String> {
        let text = self.jwks.trim();
        if text.is_empty() {
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

    pub fn ready_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.ready_ttl_seconds as i64)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_millis(self.reconcile_interval_ms)
    }

    pub fn pg_lookup_timeout(&self) -> Duration {
        Duration::from_millis(self.pg_lookup_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> PaymentConfig {
        let mut config = PaymentConfig::default();
        config.provider.secret_key = "DEV-KEY".into();
        config
    }

    #[test]
    fn defaults_need_only_the_secret_key() {
        let missing = PaymentConfig::default().validate().unwrap_err();
        assert!(missing.contains("secret_key"), "{missing}");
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn each_bound_is_checked_and_named() {
        type Break = fn(&mut PaymentConfig);
        let broken: [(&str, Break); 9] = [
            ("public_base_url", |c| c.public_base_url = "shop".into()),
            ("storefront.success_url", |c| {
                c.storefront.success_url = "ftp://x".into()
            }),
            ("storefront.cancel_url", |c| {
                c.storefront.cancel_url = "".into()
            }),
            ("storefront.fail_url", |c| {
                c.storefront.fail_url = "x".into()
            }),
            ("upstream `order`", |c| c.order.target = "order:1".into()),
            ("ready_ttl_seconds", |c| c.ready_ttl_seconds = 1),
            ("lease_ms", |c| c.lease_ms = 10),
            ("reconcile_interval_ms", |c| c.reconcile_interval_ms = 0),
            ("pg_lookup_timeout_ms", |c| c.pg_lookup_timeout_ms = 0),
        ];
        for (key, breaks) in broken {
            let mut config = valid();
            breaks(&mut config);
            let error = config.validate().unwrap_err();
            assert!(error.starts_with(key), "{key}: {error}");
        }
        let mut jwks = valid();
        jwks.jwks = "{}".into();
        assert_eq!(jwks.validate().unwrap_err(), "jwks needs a `keys` array");
    }

    #[test]
    fn the_sandbox_is_one_base_url_away_from_kakaopay() {
        let config: PaymentConfig = serde_json::from_str(
            r#"{"provider": {"base_url": "http://127.0.0.1:8090", "secret_key": "K"}}"#,
        )
        .unwrap();
        assert_eq!(config.provider.base_url, "http://127.0.0.1:8090");
        assert_eq!(config.provider.cid_subscription, "TCSUBSCRIP");
        assert_eq!(config.validate(), Ok(()));
    }
}
