//! The sandbox's configuration: where it listens, the origin its buyer pages are reached at, the
//! secret keys and CIDs it accepts, and the faults it injects from the start.
//!
//! The binary loads it with `pillivery_platform::config` like every service (defaults → file →
//! `PILLIVERY_…` variables): `listen_addr` ← `PILLIVERY_LISTEN_ADDR`, `secret_keys` ←
//! `PILLIVERY_SECRET_KEYS`, `faults.server_error_rate` ← `PILLIVERY_FAULTS__SERVER_ERROR_RATE`.
//! The listening key is `listen_addr`, not the gateway's `http_port`, so an env file shared with
//! the gateway cannot move the sandbox onto the gateway's port.

use std::fmt;
use std::net::SocketAddr;

use pillivery_platform::config::ServiceConfig;
use pillivery_platform::telemetry::TelemetryConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The secret key the sandbox accepts when none is configured; the embedded fleet gives the
/// payment service the same one.
pub const DEFAULT_SECRET_KEY: &str = "DEV-PILLIVERY-SANDBOX-SECRET-KEY";
/// KakaoPay's test CID for one-time payments.
pub const ONE_TIME_CID: &str = "TC0ONETIME";
/// KakaoPay's test CID for subscriptions: its first approval issues a SID.
pub const SUBSCRIPTION_CID: &str = "TCSUBSCRIP";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Where the KakaoPay endpoints, the buyer page and the `/sandbox/…` endpoints are served.
    /// Port 0 picks a free port (tests, the embedded fleet).
    pub listen_addr: SocketAddr,
    /// The origin the buyer's browser reaches the sandbox at, used in the `next_redirect_…`
    /// URLs (e.g. `http://localhost:8090`). Unset: `http://<listen address>`, with an
    /// unspecified address (`0.0.0.0`) replaced by `127.0.0.1`.
    // Serialized even when unset: the loader learns the top-level keys from the serialized
    // defaults, and skips `PILLIVERY_PUBLIC_URL` as another service's setting otherwise.
    pub public_url: Option<String>,
    /// The accepted secret keys (`Authorization: SECRET_KEY <key>`), comma-separated so one
    /// variable can hold several during a key rotation.
    pub secret_keys: String,
    /// The CID of one-time payments.
    pub one_time_cid: String,
    /// The CID of subscriptions: its approvals issue a SID, and only it may charge one.
    pub subscription_cid: String,
    /// How long a ready payment waits for the buyer (KakaoPay: 15 minutes).
    pub ready_ttl_seconds: u64,
    /// Faults injected from the start; `POST /sandbox/faults` replaces them at run time.
    pub faults: FaultConfig,
    pub telemetry: TelemetryConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8090)),
            public_url: None,
            secret_keys: DEFAULT_SECRET_KEY.to_owned(),
            one_time_cid: ONE_TIME_CID.to_owned(),
            subscription_cid: SUBSCRIPTION_CID.to_owned(),
            ready_ttl_seconds: 15 * 60,
            faults: FaultConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl SandboxConfig {
    /// On 127.0.0.1, a free port, no faults: the embedded fleet and tests.
    pub fn loopback() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::default()
        }
    }

    /// The configured secret keys, trimmed, empty entries dropped.
    pub fn secret_key_list(&self) -> Vec<String> {
        self.secret_keys
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks every rule that needs no I/O; the error is one line for an operator.
    pub fn validate(&self) -> Result<(), String> {
        self.telemetry.validate()?;
        if self.secret_key_list().is_empty() {
            return Err("secret_keys must name at least one key".into());
        }
        if self.secret_key_list().iter().any(|key| key.contains(' ')) {
            return Err("secret_keys must not contain spaces".into());
        }
        for (name, cid) in [
            ("one_time_cid", &self.one_time_cid),
            ("subscription_cid", &self.subscription_cid),
        ] {
            if cid.is_empty() || cid.len() > 10 || !cid.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("{name} must be 1 to 10 letters or digits"));
            }
        }
        if self.one_time_cid == self.subscription_cid {
            return Err("one_time_cid and subscription_cid must differ".into());
        }
        if let Some(url) = &self.public_url
            && !((url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > "https://".len())
        {
            return Err(format!("public_url must be an http(s) URL (got `{url}`)"));
        }
        if !(1..=24 * 60 * 60).contains(&self.ready_ttl_seconds) {
            return Err("ready_ttl_seconds must be between 1 and 86400".into());
        }
        self.faults
            .validate()
            .map_err(|reason| format!("faults.{reason}"))
    }
}

impl ServiceConfig for SandboxConfig {
    fn validate(&self) -> Result<(), String> {
        SandboxConfig::validate(self)
    }

    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

/// Faults to inject into the KakaoPay endpoints. The same shape is the body of
/// `POST /sandbox/faults`; every field has a default, so `{}` means "no faults".
///
/// One uniform draw per call picks at most one outcome: a 5xx with probability
/// `server_error_rate` (or the ramp's rate when a ramp is set), else a timeout, else a timeout
/// after commit, else (subscription charges only) a decline; the rates are exclusive, so their
/// sum is the share of calls that see a fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Added before every targeted call: a fixed delay when `latency_max_ms` is 0 or equal,
    /// else uniform in `latency_min_ms..=latency_max_ms`.
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Share of calls answered 500 without doing anything.
    pub server_error_rate: f64,
    /// Share of calls held `timeout_hold_ms` without doing anything, then answered 504 (the
    /// client has given up by then).
    pub timeout_rate: f64,
    /// Share of calls that do their work (a charge is in the ledger) and are then held
    /// `timeout_hold_ms` before the answer: the unknown outcome a client must resolve.
    /// Lookups have nothing to commit and are held like `timeout_rate`.
    pub timeout_after_commit_rate: f64,
    /// Share of subscription charges declined with -782. Other endpoints ignore it.
    pub decline_rate: f64,
    /// How long a timed-out call is held: longer than any client deadline.
    pub timeout_hold_ms: u64,
    /// When set, the 5xx rate moves linearly from `from_rate` to `to_rate` over `over_seconds`
    /// from the moment these faults were installed, then stays at `to_rate`;
    /// `server_error_rate` is then ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampConfig>,
    /// Which endpoints the faults apply to (default: all KakaoPay endpoints). In a variable,
    /// comma-separated: `PILLIVERY_FAULTS__ENDPOINTS=approve,subscription`.
    pub endpoints: EndpointSet,
    /// Seeds the fault draws so a test sees the same sequence every run; unset: OS entropy.
    /// Installing faults without a seed keeps drawing from the current generator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency_min_ms: 0,
            latency_max_ms: 0,
            server_error_rate: 0.0,
            timeout_rate: 0.0,
            timeout_after_commit_rate: 0.0,
            decline_rate: 0.0,
            timeout_hold_ms: 30_000,
            ramp: None,
            endpoints: EndpointSet::all(),
            seed: None,
        }
    }
}

/// The longest latency or hold the sandbox accepts: ten minutes.
const MAX_DELAY_MS: u64 = 600_000;

impl FaultConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.latency_min_ms > MAX_DELAY_MS || self.latency_max_ms > MAX_DELAY_MS {
            return Err(format!(
                "latency_min_ms and latency_max_ms must be at most {MAX_DELAY_MS}"
            ));
        }
        if self.latency_max_ms != 0 && self.latency_max_ms < self.latency_min_ms {
            return Err(
                "latency_max_ms must be 0 (fixed latency) or at least latency_min_ms".into(),
            );
        }
        if !(1..=MAX_DELAY_MS).contains(&self.timeout_hold_ms) {
            return Err(format!(
                "timeout_hold_ms must be between 1 and {MAX_DELAY_MS}"
            ));
        }
        let rates = [
            ("server_error_rate", self.server_error_rate),
            ("timeout_rate", self.timeout_rate),
            ("timeout_after_commit_rate", self.timeout_after_commit_rate),
            ("decline_rate", self.decline_rate),
        ];
        for (name, rate) in rates {
            check_rate(name, rate)?;
        }
        let mut worst_5xx = self.server_error_rate;
        if let Some(ramp) = &self.ramp {
            check_rate("ramp.from_rate", ramp.from_rate)?;
            check_rate("ramp.to_rate", ramp.to_rate)?;
            if ramp.over_seconds > 7 * 24 * 60 * 60 {
                return Err("ramp.over_seconds must be at most 604800".into());
            }
            worst_5xx = ramp.from_rate.max(ramp.to_rate);
        }
        // The rates share one draw, so together they cannot exceed certainty.
        let sum =
            worst_5xx + self.timeout_rate + self.timeout_after_commit_rate + self.decline_rate;
        if sum > 1.0 + 1e-9 {
            return Err(format!(
                "the 5xx (or ramp), timeout, timeout-after-commit and decline rates add up to {sum}, more than 1"
            ));
        }
        if self.endpoints.is_empty() {
            return Err("endpoints must name at least one endpoint".into());
        }
        Ok(())
    }
}

fn check_rate(name: &str, rate: f64) -> Result<(), String> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("{name} must be between 0 and 1 (got {rate})"))
    }
}

/// A failure-rate ramp for 5xx answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RampConfig {
    pub from_rate: f64,
    pub to_rate: f64,
    /// 0: `to_rate` at once.
    pub over_seconds: u64,
}

/// A KakaoPay endpoint, by the last segment of its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /online/v1/payment/ready`
    Ready,
    /// `POST /online/v1/payment/approve`
    Approve,
    /// `POST /online/v1/payment/subscription`
    Subscription,
    /// `POST /online/v1/payment/cancel`
    Cancel,
    /// `POST /online/v1/payment/manage/subscription/inactive`
    Inactive,
    /// `POST /online/v1/payment/order` (lookup)
    Order,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Ready,
        Endpoint::Approve,
        Endpoint::Subscription,
        Endpoint::Cancel,
        Endpoint::Inactive,
        Endpoint::Order,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Ready => "ready",
            Endpoint::Approve => "approve",
            Endpoint::Subscription => "subscription",
            Endpoint::Cancel => "cancel",
            Endpoint::Inactive => "inactive",
            Endpoint::Order => "order",
        }
    }

    /// The path KakaoPay serves it at.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Ready => "/online/v1/payment/ready",
            Endpoint::Approve => "/online/v1/payment/approve",
            Endpoint::Subscription => "/online/v1/payment/subscription",
            Endpoint::Cancel => "/online/v1/payment/cancel",
            Endpoint::Inactive => "/online/v1/payment/manage/subscription/inactive",
            Endpoint::Order => "/online/v1/payment/order",
        }
    }

    fn parse(name: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.name() == name)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A set of endpoints. Serialized as a list; read from a list or from a comma-separated
/// string (`"approve,subscription"`, or `"all"`), since environment variables cannot hold lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSet(Vec<Endpoint>);

impl EndpointSet {
    pub fn all() -> Self {
        Self(Endpoint::ALL.to_vec())
    }

    pub fn of(endpoints: &[Endpoint]) -> Self {
        let mut list = endpoints.to_vec();
        list.sort();
        list.dedup();
        Self(list)
    }

    pub fn contains(&self, endpoint: Endpoint) -> bool {
        self.0.contains(&endpoint)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn parse_text(text: &str) -> Result<Self, String> {
        let mut endpoints = Vec::new();
        for name in text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            if name == "all" {
                return Ok(Self::all());
            }
            endpoints.push(Endpoint::parse(name).ok_or_else(|| {
                format!(
                    "unknown endpoint `{name}` (expected all, ready, approve, subscription, cancel, inactive or order)"
                )
            })?);
        }
        Ok(Self::of(&endpoints))
    }
}

impl Default for EndpointSet {
    fn default() -> Self {
        Self::all()
    }
}

impl Serialize for EndpointSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EndpointSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            List(Vec<String>),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Text(text) => Self::parse_text(&text),
            Written::List(names) => Self::parse_text(&names.join(",")),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<SandboxConfig, String> {
        let environment: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        pillivery_platform::config::load(None, &environment).map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_valid_and_fault_free() {
        let config = load(&[]).unwrap();
        assert_eq!(config.listen_addr.port(), 8090);
        assert_eq!(config.secret_key_list(), vec![DEFAULT_SECRET_KEY]);
        assert_eq!(config.one_time_cid, "TC0ONETIME");
        assert_eq!(config.subscription_cid, "TCSUBSCRIP");
        assert_eq!(config.faults, FaultConfig::default());
        assert!(config.faults.endpoints.contains(Endpoint::Order));
    }

    #[test]
    fn environment_sets_faults_keys_and_endpoints() {
        let config = load(&[
            ("PILLIVERY_LISTEN_ADDR", "127.0.0.1:9999"),
            ("PILLIVERY_SECRET_KEYS", "old-key, new-key"),
            ("PILLIVERY_FAULTS__SERVER_ERROR_RATE", "0.2"),
            ("PILLIVERY_FAULTS__ENDPOINTS", "approve,subscription"),
            ("PILLIVERY_FAULTS__RAMP__TO_RATE", "0.75"),
            ("PILLIVERY_FAULTS__RAMP__OVER_SECONDS", "60"),
            ("PILLIVERY_FAULTS__SEED", "7"),
        ])
        .unwrap();
        assert_eq!(config.listen_addr, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(config.secret_key_list(), vec!["old-key", "new-key"]);
        assert_eq!(config.faults.server_error_rate, 0.2);
        assert_eq!(
            config.faults.endpoints,
            EndpointSet::of(&[Endpoint::Subscription, Endpoint::Approve])
        );
        assert_eq!(
            config.faults.ramp,
            Some(RampConfig {
                from_rate: 0.0,
                to_rate: 0.75,
                over_seconds: 60
            })
        );
        assert_eq!(config.faults.seed, Some(7));
    }

    #[test]
    fn invalid_settings_are_one_line_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("PILLIVERY_SECRET_KEYS", " , ")], "secret_keys"),
            (
                &[("PILLIVERY_FAULTS__SERVER_ERROR_RATE", "1.5")],
                "server_error_rate",
            ),
            (
                &[("PILLIVERY_FAULTS__DECLINE_RATE", "-0.1")],
                "decline_rate",
            ),
            (
                &[
                    ("PILLIVERY_FAULTS__SERVER_ERROR_RATE", "0.6"),
                    ("PILLIVERY_FAULTS__TIMEOUT_RATE", "0.6"),
                ],
                "add up",
            ),
            (
                &[
                    ("PILLIVERY_FAULTS__LATENCY_MIN_MS", "50"),
                    ("PILLIVERY_FAULTS__LATENCY_MAX_MS", "10"),
                ],
                "latency_max_ms",
            ),
            (
                &[("PILLIVERY_FAULTS__TIMEOUT_HOLD_MS", "0")],
                "timeout_hold_ms",
            ),
            (
                &[("PILLIVERY_FAULTS__ENDPOINTS", "approve,refund")],
                "refund",
            ),
            (&[("PILLIVERY_FAULTS__ENDPOINTS", "")], "endpoints"),
            (&[("PILLIVERY_PUBLIC_URL", "localhost:8090")], "public_url"),
            (&[("PILLIVERY_SUBSCRIPTION_CID", "TC0ONETIME")], "differ"),
            (&[("PILLIVERY_READY_TTL_SECONDS", "0")], "ready_ttl_seconds"),
            (&[("PILLIVERY_FAULTS__RAMP__TO_RATE", "2")], "ramp.to_rate"),
        ];
        for (variables, expected) in cases {
            let error = load(variables)
                .map(|_| ())
                .expect_err(&format!("{variables:?}"));
            assert!(error.contains(expected), "{variables:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn endpoint_sets_read_lists_strings_and_all() {
        let from_list: FaultConfig =
            serde_json::from_str(r#"{"endpoints": ["subscription", "approve", "approve"]}"#)
                .unwrap();
        assert_eq!(
            from_list.endpoints,
            EndpointSet::of(&[Endpoint::Approve, Endpoint::Subscription])
        );
        let from_text: FaultConfig = serde_json::from_str(r#"{"endpoints": "all"}"#).unwrap();
        assert_eq!(from_text.endpoints, EndpointSet::all());
        let written = serde_json::to_value(&from_list).unwrap();
        assert_eq!(
            written["endpoints"],
            serde_json::json!(["approve", "subscription"])
        );
        assert!(serde_json::from_str::<FaultConfig>(r#"{"endpoints": ["refund"]}"#).is_err());
        assert!(serde_json::from_str::<FaultConfig>(r#"{"latency": 5}"#).is_err());
    }
}
