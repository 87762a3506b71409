//! The user service's configuration.
//!
//! Top-level keys map to flat variables: `jwt_private_key` ← `PILLIVERY_JWT_PRIVATE_KEY`,
//! `admin_email` ← `PILLIVERY_ADMIN_EMAIL`, `admin_password` ← `PILLIVERY_ADMIN_PASSWORD`.

use pillivery_platform::auth::{SigningKey, TokenConfig};
use pillivery_platform::config::ServiceConfig;
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};

use crate::password::HashCost;

/// Default lifetime of a refresh token: 14 days (SPEC section 3).
pub const DEFAULT_REFRESH_TTL_SECONDS: u64 = 14 * 24 * 60 * 60;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    /// Issuer, audience and access-token lifetime; the gateway must use the same values.
    pub tokens: TokenConfig,
    /// Lifetime of a refresh token (each rotation starts a new one).
    pub refresh_ttl_seconds: u64,
    /// The Ed25519 signing key as PKCS#8 PEM. Takes precedence over `jwt_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_private_key: Option<String>,
    /// Embedded mode: the key file read at start, generated there when missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_key_file: Option<String>,
    /// Redis for token state and rate limits; unset → an in-process store (one replica only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Key prefix in Redis for everything this service stores there (empty: none).
    pub redis_key_prefix: String,
    /// Login attempts allowed per minute, per client IP and per e-mail.
    pub login_attempts_per_minute: u32,
    /// The administrator account [`crate::ensure_admin`] makes sure of (the fleet calls it).
    pub admin_email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    /// Argon2id cost (defaults: the argon2 crate's).
    pub password_hash_cost: HashCost,
}

impl Default for UserConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::new("sqlite://./data/user.db?mode=rwc"),
            tokens: TokenConfig::default(),
            refresh_ttl_seconds: DEFAULT_REFRESH_TTL_SECONDS,
            jwt_private_key: None,
            jwt_key_file: None,
            redis_url: None,
            redis_key_prefix: "pillivery".into(),
            login_attempts_per_minute: 10,
            admin_email: "admin@pillivery.local".to_owned(),
            admin_password: None,
            password_hash_cost: HashCost::default(),
        }
    }
}

impl ServiceConfig for UserConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.database.validate()?;
        if self.tokens.issuer.is_empty() || self.tokens.audience.is_empty() {
            return Err("tokens.issuer and tokens.audience must not be empty".into());
        }
        if !(60..=24 * 60 * 60).contains(&self.tokens.access_ttl_seconds) {
            return Err("tokens.access_ttl_seconds must be between 60 and 86400".into());
        }
        if !(60..=365 * 24 * 60 * 60).contains(&self.refresh_ttl_seconds) {
            return Err("refresh_ttl_seconds must be between 60 and 31536000".into());
        }
        if let Some(pem) = &self.jwt_private_key {
            SigningKey::from_pkcs8_pem(pem, None)
                .map_err(|error| format!("jwt_private_key: {error}"))?;
        }
        if self.jwt_key_file.as_deref().is_some_and(str::is_empty) {
            return Err("jwt_key_file must not be empty when set".into());
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err("redis_url must start with redis:// or rediss://".into());
        }
        if self.login_attempts_per_minute == 0 {
            return Err("login_attempts_per_minute must be at least 1".into());
        }
        if crate::domain::account::validate_email(&self.admin_email).is_err() {
            return Err("admin_email must be a valid e-mail address".into());
        }
        if let Some(password) = &self.admin_password
            && crate::domain::account::validate_password(password).is_err()
        {
            return Err(
                "admin_password must be 8 to 64 characters with a letter, a digit and one of !@#$%^+=-"
                    .into(),
            );
        }
        self.password_hash_cost.validate()
    }
}
