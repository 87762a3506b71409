//! The catalog's configuration.

use pillivery_platform::auth::{TokenConfig, VerificationKey};
use pillivery_platform::config::ServiceConfig;
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::telemetry::TelemetryConfig;
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
        if self.demo_items > MAX_DEMO_ITEMS {
            return Err(format!("demo_items must be at most {MAX_DEMO_ITEMS}"));
        }
        self.verification_keys()?;
        Ok(())
    }
}

impl CatalogConfig {
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
}
