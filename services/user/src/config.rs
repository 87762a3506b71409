//! The user service's configuration.
//!
//! Top-level keys map to flat variables: `jwt_private_key` ← `PILLIVERY_JWT_PRIVATE_KEY`,
//! `admin_email` ← `PILLIVERY_ADMIN_EMAIL`, `admin_password` ← `PILLIVERY_ADMIN_PASSWORD`.

use std::collections::BTreeMap;

use pillivery_platform::auth::{SigningKey, TokenConfig};
use pillivery_platform::config::ServiceConfig;
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::events::EventsConfig;
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
    /// OAuth2 login providers (none by default: every provider answers 404 until configured).
    pub oauth: OAuthConfig,
    /// The event bus and the relay that publishes `UserWithdrawn` (see docs/events.md).
    pub events: EventsConfig,
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
            oauth: OAuthConfig::default(),
            events: EventsConfig::default(),
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
        self.events.validate()?;
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
        self.password_hash_cost.validate()?;
        self.oauth.validate()
    }
}

/// OAuth2 login (authorization code + PKCE + state).
///
/// A provider is configured under its name, which is the `{provider}` of the routes
/// (`/api/auth/oauth2/kakao/authorize`): for example `PILLIVERY_OAUTH__PROVIDERS__KAKAO__KIND=kakao`,
/// `…__CLIENT_ID`, `…__CLIENT_SECRET`, `…__REDIRECT_URI` (the gateway's callback route, as
/// registered at the provider). Endpoints and scopes left empty take the `kind`'s preset
/// ([`OAuthProvider::kakao`], [`OAuthProvider::google`]); tests point them at a local fake.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    pub providers: BTreeMap<String, OAuthProvider>,
    /// How long a started login (its `state` and PKCE verifier) may take to come back.
    pub state_ttl_seconds: u64,
    /// How long a first-time user has to complete the profile with the signup token.
    pub signup_ttl_seconds: u64,
    /// The limit for each call to a provider (token exchange, user info).
    pub http_timeout_ms: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            providers: BTreeMap::new(),
            state_ttl_seconds: 600,
            signup_ttl_seconds: 1800,
            http_timeout_ms: 5000,
        }
    }
}

impl OAuthConfig {
    /// The provider configured under `name`, its empty endpoints and scopes filled from the
    /// preset of its kind.
    pub fn provider(&self, name: &str) -> Option<OAuthProvider> {
        self.providers.get(name).map(OAuthProvider::resolved)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(30..=3600).contains(&self.state_ttl_seconds) {
            return Err("oauth.state_ttl_seconds must be between 30 and 3600".into());
        }
        if !(60..=24 * 60 * 60).contains(&self.signup_ttl_seconds) {
            return Err("oauth.signup_ttl_seconds must be between 60 and 86400".into());
        }
        if !(100..=60_000).contains(&self.http_timeout_ms) {
            return Err("oauth.http_timeout_ms must be between 100 and 60000".into());
        }
        for (name, provider) in &self.providers {
            let valid_name = !name.is_empty()
                && name.len() <= 32
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name {
                return Err(format!(
                    "oauth.providers: `{name}` must be 1 to 32 lower-case letters, digits or hyphens"
                ));
            }
            provider
                .resolved()
                .validate()
                .map_err(|reason| format!("oauth.providers.{name}.{reason}"))?;
        }
        Ok(())
    }
}

/// Which user-info shape a provider answers with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuthKind {
    /// `id` (a number) and `kakao_account.email`.
    #[default]
    Kakao,
    /// OpenID Connect: `sub`, `email`, `email_verified` (must be true).
    Google,
}

/// One OAuth2 provider. `client_secret` is never serialized when empty and never logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthProvider {
    pub kind: OAuthKind,
    pub authorize_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
    /// Where the provider sends the browser back: the gateway's
    /// `/api/auth/oauth2/{provider}/callback`, exactly as registered at the provider.
    pub redirect_uri: String,
    /// Space-separated.
    pub scopes: String,
}

impl std::fmt::Debug for OAuthProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthProvider")
            .field("kind", &self.kind)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("userinfo_url", &self.userinfo_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &if self.client_secret.is_empty() {
                    ""
                } else {
                    "[redacted]"
                },
            )
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl OAuthProvider {
    /// Kakao Login's endpoints, asking for the e-mail address.
    pub fn kakao(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> OAuthProvider {
        OAuthProvider {
            kind: OAuthKind::Kakao,
            authorize_url: "https://kauth.kakao.com/oauth/authorize".into(),
            token_url: "https://kauth.kakao.com/oauth/token".into(),
            userinfo_url: "https://kapi.kakao.com/v2/user/me".into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
            scopes: "account_email".into(),
        }
    }

    /// Google's OpenID Connect endpoints.
    pub fn google(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> OAuthProvider {
        OAuthProvider {
            kind: OAuthKind::Google,
            authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            userinfo_url: "https://openidconnect.googleapis.com/v1/userinfo".into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
            scopes: "openid email profile".into(),
        }
    }

    /// This provider with empty endpoints and scopes taken from its kind's preset.
    pub fn resolved(&self) -> OAuthProvider {
        let preset = match self.kind {
            OAuthKind::Kakao => OAuthProvider::kakao("", "", ""),
            OAuthKind::Google => OAuthProvider::google("", "", ""),
        };
        let or = |value: &String, preset: String| {
            if value.trim().is_empty() {
                preset
            } else {
                value.trim().to_owned()
            }
        };
        OAuthProvider {
            kind: self.kind,
            authorize_url: or(&self.authorize_url, preset.authorize_url),
            token_url: or(&self.token_url, preset.token_url),
            userinfo_url: or(&self.userinfo_url, preset.userinfo_url),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            redirect_uri: self.redirect_uri.trim().to_owned(),
            scopes: or(&self.scopes, preset.scopes),
        }
    }

    /// Checks a resolved provider; the error starts with the offending key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, url) in [
            ("authorize_url", &self.authorize_url),
            ("token_url", &self.token_url),
            ("userinfo_url", &self.userinfo_url),
            ("redirect_uri", &self.redirect_uri),
        ] {
            check_url(url).map_err(|reason| format!("{key}: {reason}"))?;
        }
        if self.client_id.trim().is_empty() {
            return Err("client_id must not be empty".into());
        }
        Ok(())
    }
}

/// An absolute `https` URL without a fragment; plain `http` only to a loopback host (a local
/// fake provider, a developer's gateway).
fn check_url(value: &str) -> Result<(), String> {
    let url =
        reqwest::Url::parse(value).map_err(|error| format!("`{value}` is not a URL: {error}"))?;
    let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
        return Err(format!("`{value}` has no host"));
    };
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "`{value}` must be https (http only for a loopback host)"
            ));
        }
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{value}` must have neither a fragment nor credentials"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use pillivery_platform::config::ServiceConfig as _;

    use super::*;

    fn with_provider(provider: OAuthProvider) -> UserConfig {
        let mut config = UserConfig::default();
        config.oauth.providers.insert("kakao".into(), provider);
        config
    }

    #[test]
    fn presets_are_valid_and_no_provider_is_the_default() {
        assert!(UserConfig::default().oauth.providers.is_empty());
        let redirect = "https://shop.example/api/auth/oauth2/kakao/callback";
        for provider in [
            OAuthProvider::kakao("id", "secret", redirect),
            OAuthProvider::google("id", "", redirect),
        ] {
            assert_eq!(with_provider(provider).validate(), Ok(()));
        }
    }

    #[test]
    fn bad_providers_are_refused_naming_the_key() {
        let redirect = "https://shop.example/cb";
        type Spoil = fn(&mut OAuthProvider);
        let cases: [(&str, Spoil); 6] = [
            ("token_url", |p| {
                p.token_url = "http://kauth.kakao.com/token".into()
            }),
            ("authorize_url", |p| p.authorize_url = "not a url".into()),
            ("userinfo_url", |p| {
                p.userinfo_url = "ftp://x.example/me".into()
            }),
            ("redirect_uri", |p| p.redirect_uri = String::new()),
            ("redirect_uri", |p| {
                p.redirect_uri = "https://a.example/cb#x".into()
            }),
            ("client_id", |p| p.client_id = " ".into()),
        ];
        for (key, spoil) in cases {
            let mut provider = OAuthProvider::kakao("id", "secret", redirect);
            spoil(&mut provider);
            let error = with_provider(provider).validate().expect_err(key);
            assert!(error.contains(key), "{key}: {error}");
        }
        // Plain http only to a loopback host (a local fake provider).
        let mut local = OAuthProvider::kakao("id", "", "http://localhost:8080/cb");
        local.token_url = "http://127.0.0.1:9/token".into();
        local.userinfo_url = "http://[::1]:9/me".into();
        assert_eq!(with_provider(local).validate(), Ok(()));
        let mut config = with_provider(OAuthProvider::kakao("id", "", redirect));
        config
            .oauth
            .providers
            .insert("Ka kao".into(), OAuthProvider::default());
        assert!(config.validate().unwrap_err().contains("Ka kao"));
    }

    #[test]
    fn the_environment_configures_a_provider_from_its_preset() {
        let environment: HashMap<String, String> = [
            ("PILLIVERY_OAUTH__PROVIDERS__GOOGLE__KIND", "google"),
            ("PILLIVERY_OAUTH__PROVIDERS__GOOGLE__CLIENT_ID", "abc.apps"),
            (
                "PILLIVERY_OAUTH__PROVIDERS__GOOGLE__CLIENT_SECRET",
                "s3cret",
            ),
            (
                "PILLIVERY_OAUTH__PROVIDERS__GOOGLE__REDIRECT_URI",
                "https://shop.example/api/auth/oauth2/google/callback",
            ),
            ("PILLIVERY_OAUTH__STATE_TTL_SECONDS", "300"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let config: UserConfig = pillivery_platform::config::load(None, &environment).unwrap();
        assert_eq!(config.oauth.state_ttl_seconds, 300);
        let google = config.oauth.provider("google").unwrap();
        assert_eq!(
            google,
            OAuthProvider::google(
                "abc.apps",
                "s3cret",
                "https://shop.example/api/auth/oauth2/google/callback"
            )
        );
        assert!(config.oauth.provider("kakao").is_none());
    }

    #[test]
    fn the_client_secret_is_never_shown() {
        let provider = OAuthProvider::kakao("id", "top-secret", "https://a.example/cb");
        assert!(!format!("{provider:?}").contains("top-secret"));
        let public = OAuthProvider::kakao("id", "", "https://a.example/cb");
        let json = serde_json::to_value(&public).unwrap();
        assert!(json.get("client_secret").is_none(), "{json}");
    }
}
