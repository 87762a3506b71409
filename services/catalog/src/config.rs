//! The catalog's configuration.

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

/// Most demo items a start may seed (the load tests use 40 000).
pub const MAX_DEMO_ITEMS: u32 = 1_000_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    /// When the catalog is empty at start, fill it with this many demo items (0: never).
    pub demo_items: u32,
    /// How access tokens are checked; the same values as the user service and the gateway.
    pub tokens: TokenConfig,
    /// The public keys that verify the bearer token forwarded to the admin RPCs, as a JWKS
    /// document (`{"keys":[...]}`); during a key rotation it lists the old and the new key.
    /// Empty: every admin call is refused as unauthenticated (browsing needs no token).
    pub jwks: String,
    /// Redis shared by the replicas: the second cache level, the cache version, view sketches
    /// and the fold lock. Unset: an in-process store (one replica only; the embedded fleet
    /// passes its own shared store instead, see `BoundCatalog::bind_with`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Key prefix in Redis for everything the catalog stores there; the catalog adds its own
    /// `catalog:` segment below it.
    pub redis_key_prefix: String,
    /// How long one key-value operation may take before the catalog gives up on it and falls
    /// back (database instead of cache, view not counted). It is on the hot path: keep it short.
    pub kv_timeout_ms: u64,
    /// The day a view counts on is a business date in this zone (IANA name).
    pub business_time_zone: BusinessCalendar,
    pub cache: CacheConfig,
    pub views: ViewsConfig,
    /// The event bus the catalog consumes sales from (see docs/events.md).
    pub events: EventsConfig,
    /// The order service (`OrderInternalService.CheckPurchase`): whether the author of a new
    /// review bought the item in a PAID order. Empty target: creating a review answers 503
    /// `UPSTREAM_UNAVAILABLE` (everything else works), and the start logs a warning.
    pub order: UpstreamConfig,
    /// The user service (`UserInternalService.GetDisplayNames`): the author's display name,
    /// stored with a new review. Empty target: as for `order`.
    pub user: UpstreamConfig,
}

/// The two-level cache of list pages and the main page (see `crate::cache`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Off: every answer comes from the database (for comparison and troubleshooting).
    pub enabled: bool,
    /// Level 1 (in-process) holds at most this many bytes of keys and encoded answers.
    pub local_max_bytes: u64,
    /// Level 1 entries live this long at most.
    pub local_ttl_ms: u64,
    /// Level 2 (shared key-value store) entries live this long at most.
    pub shared_ttl_ms: u64,
    /// A replica rereads the shared catalog version at most this long after its last read:
    /// the bound on how long another replica's change can stay invisible here.
    pub version_check_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            local_max_bytes: 32 * 1024 * 1024,
            local_ttl_ms: 10_000,
            shared_ttl_ms: 300_000,
            version_check_ms: 100,
        }
    }
}

impl CacheConfig {
    pub fn local_ttl(&self) -> Duration {
        Duration::from_millis(self.local_ttl_ms)
    }

    pub fn shared_ttl(&self) -> Duration {
        Duration::from_millis(self.shared_ttl_ms)
    }

    pub fn version_check(&self) -> Duration {
        Duration::from_millis(self.version_check_ms)
    }

    fn validate(&self) -> Result<(), String> {
        if self.local_max_bytes < 1024 * 1024 {
            return Err("cache.local_max_bytes must be at least 1048576 (1 MiB)".into());
        }
        if !(100..=3_600_000).contains(&self.local_ttl_ms) {
            return Err("cache.local_ttl_ms must be between 100 and 3600000".into());
        }
        if !(1_000..=86_400_000).contains(&self.shared_ttl_ms) {
            return Err("cache.shared_ttl_ms must be between 1000 and 86400000".into());
        }
        if !(1..=60_000).contains(&self.version_check_ms) {
            return Err("cache.version_check_ms must be between 1 and 60000".into());
        }
        Ok(())
    }
}

/// View counting (see `crate::views`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewsConfig {
    /// How often a replica tries to fold finished days into the stored totals (only the one
    /// holding the fold lock does the work).
    pub fold_interval_ms: u64,
    /// A day is folded only this long after it ended, so a view begun just before midnight
    /// has landed in its sketch first.
    pub fold_grace_ms: u64,
    /// Days a day's sketches are kept: the fold must run at least once in this window, or
    /// that day's views are lost.
    pub retention_days: u32,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        Self {
            fold_interval_ms: 60_000,
            fold_grace_ms: 120_000,
            retention_days: 7,
        }
    }
}

impl ViewsConfig {
    pub fn fold_interval(&self) -> Duration {
        Duration::from_millis(self.fold_interval_ms)
    }

    pub fn fold_grace(&self) -> Duration {
        Duration::from_millis(self.fold_grace_ms)
    }

    fn validate(&self) -> Result<(), String> {
        if !(100..=86_400_000).contains(&self.fold_interval_ms) {
            return Err("views.fold_interval_ms must be between 100 and 86400000".into());
        }
        if self.fold_grace_ms > 6 * 3_600_000 {
            return Err("views.fold_grace_ms must be at most 21600000 (6 hours)".into());
        }
        if !(2..=60).contains(&self.retention_days) {
            return Err("views.retention_days must be between 2 and 60".into());
        }
        Ok(())
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::new("sqlite://./data/catalog.db?mode=rwc"),
            demo_items: 0,
            tokens: TokenConfig::default(),
            jwks: String::new(),
            redis_url: None,
            redis_key_prefix: "pillivery".into(),
            kv_timeout_ms: 250,
            business_time_zone: BusinessCalendar::default(),
            cache: CacheConfig::default(),
            views: ViewsConfig::default(),
            events: EventsConfig::default(),
            order: UpstreamConfig::default(),
            user: UpstreamConfig::default(),
        }
    }
}

impl ServiceConfig for CatalogConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.database.validate()?;
        self.events.validate()?;
        if self.demo_items > MAX_DEMO_ITEMS {
            return Err(format!("demo_items must be at most {MAX_DEMO_ITEMS}"));
        }
        self.verification_keys()?;
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err("redis_url must start with redis:// or rediss://".into());
        }
        if !(1..=10_000).contains(&self.kv_timeout_ms) {
            return Err("kv_timeout_ms must be between 1 and 10000".into());
        }
        self.cache.validate()?;
        self.views.validate()?;
        // Optional edges (see the fields); a target that is set must be usable.
        for (name, upstream) in [("order", &self.order), ("user", &self.user)] {
            if !upstream.target.trim().is_empty() {
                upstream.validate(name)?;
            }
        }
        Ok(())
    }
}

impl CatalogConfig {
    pub fn kv_timeout(&self) -> Duration {
        Duration::from_millis(self.kv_timeout_ms)
    }

    /// The keys of [`jwks`](CatalogConfig::jwks).
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
    use pillivery_platform::auth::{SigningKey, jwks};

    #[test]
    fn jwks_documents_parse_or_say_why() {
        assert_eq!(verification_keys_from_jwks("  "), Ok(Vec::new()));
        let key = SigningKey::generate().verification_key();
        let text = jwks(std::slice::from_ref(&key)).to_string();
        assert_eq!(verification_keys_from_jwks(&text), Ok(vec![key]));
        let not_json = verification_keys_from_jwks("{").unwrap_err();
        assert!(not_json.starts_with("jwks is not JSON"), "{not_json}");
        assert_eq!(
            verification_keys_from_jwks("{}").unwrap_err(),
            "jwks needs a `keys` array"
        );
        let bad_key = verification_keys_from_jwks(r#"{"keys":[{"kty":"RSA"}]}"#).unwrap_err();
        assert!(bad_key.starts_with("jwks: "), "{bad_key}");
        let config = CatalogConfig {
            jwks: "[]".to_owned(),
            ..CatalogConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn defaults_are_valid_and_each_bound_is_checked() {
        assert_eq!(CatalogConfig::default().validate(), Ok(()));
        type Breaks = fn(&mut CatalogConfig);
        let broken: [(&str, Breaks); 9] = [
            ("redis_url", |c| c.redis_url = Some("http://x".into())),
            ("kv_timeout_ms", |c| c.kv_timeout_ms = 0),
            ("cache.local_max_bytes", |c| c.cache.local_max_bytes = 10),
            ("cache.local_ttl_ms", |c| c.cache.local_ttl_ms = 0),
            ("cache.shared_ttl_ms", |c| c.cache.shared_ttl_ms = 10),
            ("cache.version_check_ms", |c| c.cache.version_check_ms = 0),
            ("views.fold_interval_ms", |c| c.views.fold_interval_ms = 0),
            ("views.fold_grace_ms", |c| c.views.fold_grace_ms = u64::MAX),
            ("views.retention_days", |c| c.views.retention_days = 1),
        ];
        for (key, breaks) in broken {
            let mut config = CatalogConfig::default();
            breaks(&mut config);
            let error = config.validate().unwrap_err();
            assert!(error.starts_with(key), "{key}: {error}");
        }
        let redis = CatalogConfig {
            redis_url: Some("rediss://cache:6380".into()),
            ..CatalogConfig::default()
        };
        assert_eq!(redis.validate(), Ok(()));
    }

    #[test]
    fn review_upstreams_are_optional_but_checked_when_set() {
        let mut config = CatalogConfig::default();
        assert!(config.order.target.is_empty() && config.user.target.is_empty());
        config.order = UpstreamConfig::new("dns://order:50051");
        config.user = UpstreamConfig::new("http://user:50051");
        assert_eq!(config.validate(), Ok(()));
        config.user = UpstreamConfig::new("user:50051");
        let error = config.validate().unwrap_err();
        assert!(error.starts_with("upstream `user`"), "{error}");
        config.user = UpstreamConfig::default();
        config.order.policy.max_concurrent = 0;
        let error = config.validate().unwrap_err();
        assert!(error.starts_with("upstream `order`"), "{error}");
    }

    #[test]
    fn the_time_zone_is_an_iana_name() {
        let config: CatalogConfig =
            serde_json::from_str(r#"{"business_time_zone":"Europe/Paris"}"#).unwrap();
        assert_eq!(config.business_time_zone.to_string(), "Europe/Paris");
        assert!(
            serde_json::from_str::<CatalogConfig>(r#"{"business_time_zone":"Mars/Base"}"#).is_err()
        );
        assert_eq!(
            CatalogConfig::default().business_time_zone.to_string(),
            "Asia/Seoul"
        );
    }
}
