//! The gateway's configuration.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use pillivery_platform::auth::TokenConfig;
use pillivery_platform::client::UpstreamConfig;
use pillivery_platform::config::ServiceConfig;
use pillivery_platform::resilience::EdgePolicy;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address of the public REST port.
    pub http_host: IpAddr,
    /// `PILLIVERY_HTTP_PORT`; 0 picks a free port.
    pub http_port: u16,
    /// The gateway's own gRPC health and admin (`/metrics`) ports; never the public one.
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Origins allowed by CORS, comma-separated; empty disables CORS, `*` allows any.
    pub cors_allowed_origins: String,
    /// Deadline of a call whose RPC declares none.
    pub default_deadline_ms: u64,
    /// Largest request body of a route that declares no limit.
    pub max_body_bytes: u64,
    /// Take the client's address from `X-Forwarded-For` (only behind a trusted proxy such as
    /// the Envoy edge); otherwise the TCP peer address is used.
    pub trust_forwarded_for: bool,
    /// Downstream services by name.
    pub upstreams: BTreeMap<String, GatewayUpstream>,
    /// How access tokens are checked.
    pub tokens: TokenConfig,
    /// The public keys that verify access tokens, as a JWKS document (`{"keys":[...]}`); during
    /// a key rotation it lists the old and the new key. Empty: every token is refused.
    pub jwks: String,
    /// Redis for the token blacklist shared with the user service. Unset: an in-process store,
    /// which only the embedded fleet (one process for every service) can share.
    pub redis_url: Option<String>,
    /// Key prefix in Redis; must equal the user service's `redis_key_prefix`.
    pub redis_key_prefix: String,
}

/// One downstream and the proto services the gateway exposes from it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayUpstream {
    /// `http://host:port`, a comma-separated list, or `dns://host:port`.
    pub target: String,
    /// Full proto service names, comma-separated (`pillivery.catalog.v1.CatalogService`).
    pub services: String,
    pub policy: EdgePolicy,
}

impl GatewayUpstream {
    pub fn new(target: impl Into<String>, services: &[&str]) -> Self {
        Self {
            target: target.into(),
            services: services.join(","),
            policy: EdgePolicy::default(),
        }
    }

    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.services
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
    }

    pub fn edge(&self) -> UpstreamConfig {
        UpstreamConfig {
            target: self.target.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            http_host: IpAddr::from([0, 0, 0, 0]),
            http_port: 8080,
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            cors_allowed_origins: String::new(),
            default_deadline_ms: 10_000,
            max_body_bytes: 1024 * 1024,
            trust_forwarded_for: false,
            tokens: TokenConfig::default(),
            jwks: String::new(),
            redis_url: None,
            redis_key_prefix: "pillivery".into(),
            upstreams: BTreeMap::from([(
                "catalog".to_owned(),
                GatewayUpstream::new(
                    "dns://catalog:50051",
                    &["pillivery.catalog.v1.CatalogService"],
                ),
            )]),
        }
    }
}

impl GatewayConfig {
    /// Proto service full name → upstream name.
    pub fn exposed_services(&self) -> HashMap<String, String> {
        self.upstreams
            .iter()
            .flat_map(|(upstream, config)| {
                config
                    .service_names()
                    .map(move |service| (service.to_owned(), upstream.clone()))
            })
            .collect()
    }
}

impl ServiceConfig for GatewayConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.telemetry.validate()?;
        if !(1..=600_000).contains(&self.default_deadline_ms) {
            return Err("default_deadline_ms must be between 1 and 600000".into());
        }
        if !(1..=1024 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err("max_body_bytes must be between 1 and 1073741824".into());
        }
        if self.upstreams.is_empty() {
            return Err("at least one upstream must be configured".into());
        }
        for (name, upstream) in &self.upstreams {
            upstream.edge().validate(name)?;
            if upstream.service_names().next().is_none() {
                return Err(format!("upstream `{name}` exposes no services"));
            }
        }
        self.verification_keys()?;
        for origin in self.cors_origins() {
            if origin != "*" && http::HeaderValue::from_str(&origin).is_err() {
                return Err(format!(
                    "cors_allowed_origins: `{origin}` is not a valid origin"
                ));
            }
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// The keys of `jwks`.
    pub fn verification_keys(
        &self,
    ) -> Result<Vec<pillivery_platform::auth::VerificationKey>, String> {
        if self.jwks.trim().is_empty() {
            return Ok(Vec::new());
        }
        let document: serde_json::Value = serde_json::from_str(&self.jwks)
            .map_err(|error| format!("jwks is not JSON: {error}"))?;
        document["keys"]
            .as_array()
            .ok_or("jwks needs a `keys` array")?
            .iter()
            .map(|jwk| {
                pillivery_platform::auth::VerificationKey::from_jwk(jwk)
                    .map_err(|error| format!("jwks: {error}"))
            })
            .collect()
    }

    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
