//! Outgoing gRPC edges: one [`Upstream`] per downstream service, used by the gateway and by
//! services that call each other.
//!
//! Every call goes through, in order: the circuit breaker (fails fast while open), the bulkhead
//! (bounded concurrency per downstream, so one slow service cannot take every connection), and a
//! deadline covering all attempts. Retries happen only when the caller says the call is safe to
//! repeat (`idempotency_level` of the RPC, or an idempotency identity), only for faults that mean
//! "not processed" (UNAVAILABLE), with jittered backoff, and only while the retry budget allows.
//!
//! Targets: `http://host:port` (one endpoint), `http://a:1,http://b:2` (a static list, balanced),
//! `dns://host:port` (every address the name resolves to, re-resolved periodically and
//! balanced; a Kubernetes headless service gives one address per pod), or
//! `kubernetes:///service[.namespace]:port` (the Service's ready pods, from its EndpointSlices:
//! see [`kubernetes`]).

pub mod kubernetes;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

use self::kubernetes::KubernetesTarget;
use crate::error::{ApiError, Text};
use crate::resilience::{Backoff, Bulkhead, CircuitBreaker, EdgePolicy, RetryBudget};
use crate::shutdown::{Shutdown, Tasks};

/// How often a `dns://` target is resolved again.
const DNS_REFRESH: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port`, a comma-separated list of those, `dns://host:port` or
    /// `kubernetes:///service[.namespace]:port`.
    pub target: String,
    pub policy: EdgePolicy,
}

impl UpstreamConfig {
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            policy: EdgePolicy::default(),
        }
    }

    pub fn validate(&self, name: &str) -> Result<(), String> {
        Target::parse(&self.target).map_err(|reason| format!("upstream `{name}`: {reason}"))?;
        self.policy
            .validate()
            .map_err(|reason| format!("upstream `{name}`: {reason}"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Static(Vec<String>),
    Dns { host: String, port: u16 },
    Kubernetes(KubernetesTarget),
}

impl Target {
    fn parse(target: &str) -> Result<Target, String> {
        if target.starts_with("kubernetes:") {
            return KubernetesTarget::parse(target).map(Target::Kubernetes);
        }
        if let Some(rest) = target.strip_prefix("dns://") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("`{target}` needs a port (dns://host:port)"))?;
            let port = port
                .parse()
                .map_err(|_| format!("`{target}` has an invalid port"))?;
            if host.is_empty() {
                return Err(format!("`{target}` has no host"));
            }
            return Ok(Target::Dns {
                host: host.to_owned(),
                port,
            });
        }
        let endpoints: Vec<String> = target
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            return Err(
                "no target set (http://host:port, dns://host:port or kubernetes:///service:port)"
                    .into(),
            );
        }
        for endpoint in &endpoints {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "`{endpoint}` must start with http://, https://, dns:// or kubernetes:///"
                ));
            }
            Endpoint::from_shared(endpoint.clone())
                .map_err(|error| format!("`{endpoint}`: {error}"))?;
        }
        Ok(Target::Static(endpoints))
    }
}

/// Why a call did not produce an answer from the downstream service.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("upstream `{upstream}` is failing; circuit open")]
    CircuitOpen {
        upstream: String,
        retry_after: Duration,
    },
    #[error("upstream `{upstream}` has too many calls in flight")]
    Overloaded { upstream: String },
    #[error("upstream `{upstream}` did not answer within the deadline")]
    DeadlineExceeded { upstream: String },
    #[error("upstream answered {0}")]
    Status(tonic::Status),
}

impl CallError {
    /// The client-facing error for failures that did not come from the downstream's own
    /// answer; a downstream status is returned as it is (`Err`) so the caller decides.
    pub fn into_api_error(self) -> Result<ApiError, tonic::Status> {
        match self {
            CallError::CircuitOpen { .. } | CallError::Overloaded { .. } => Ok(ApiError::new(
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
                Text::new(
                    "서비스를 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도해 주세요.",
                    "The service is temporarily unavailable. Please try again shortly.",
                ),
            )),
            CallError::DeadlineExceeded { .. } => Ok(ApiError::new(
                Code::DeadlineExceeded,
                "UPSTREAM_TIMEOUT",
                Text::new(
                    "응답 시간이 초과되었습니다. 잠시 후 다시 시도해 주세요.",
                    "The service took too long to answer. Please try again shortly.",
                ),
            )),
            CallError::Status(status) => Err(status),
        }
    }
}

/// How one call may be made.
#[derive(Clone, Copy, Debug)]
pub struct CallOptions {
    /// For all attempts together.
    pub deadline: Duration,
    /// The call may be sent again after an UNAVAILABLE answer (it has no side effects, is
    /// idempotent, or carries an idempotency identity).
    pub retryable: bool,
}

/// Whether a status means the downstream is unwell (counted by the breaker) rather than a
/// business answer (not found, invalid, declined...), which says the downstream works fine.
pub fn is_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::DataLoss
    )
}

/// One downstream service.
#[derive(Clone)]
pub struct Upstream {
    name: String,
    channel: Channel,
    breaker: CircuitBreaker,
    bulkhead: Bulkhead,
    retry_budget: RetryBudget,
    backoff: Backoff,
    max_retries: u32,
}

impl Upstream {
    /// Builds the channel (connections are made lazily, on first use). `dns://` and
    /// `kubernetes:///` targets keep a resolver task in `tasks` until `shutdown`; the latter
    /// talks to the API server with the pod's service account (in-cluster configuration).
    pub fn new(
        name: &str,
        config: &UpstreamConfig,
        tasks: &Tasks,
        shutdown: &Shutdown,
    ) -> Result<Upstream, String> {
        let kubernetes =
            match Target::parse(&config.target)? {
                Target::Kubernetes(_) => Some(in_cluster_client().map_err(|reason| {
                    format!("upstream `{name}`: `{}`: {reason}", config.target)
                })?),
                _ => None,
            };
        Self::build(name, config, kubernetes, tasks, shutdown)
    }

    /// Like [`Upstream::new`], with the Kubernetes API reached through `client` (for a
    /// `kubernetes:///` target; other targets ignore it).
    pub fn with_kubernetes_client(
        name: &str,
        config: &UpstreamConfig,
        client: kube::Client,
        tasks: &Tasks,
        shutdown: &Shutdown,
    ) -> Result<Upstream, String> {
        Self::build(name, config, Some(client), tasks, shutdown)
    }

    fn build(
        name: &str,
        config: &UpstreamConfig,
        kubernetes: Option<kube::Client>,
        tasks: &Tasks,
        shutdown: &Shutdown,
    ) -> Result<Upstream, String> {
        let policy = &config.policy;
        let connect_timeout = Duration::from_millis(policy.connect_timeout_ms);
        let channel = match Target::parse(&config.target)? {
            Target::Static(endpoints) if endpoints.len() == 1 => {
                endpoint(&endpoints[0], connect_timeout)?.connect_lazy()
            }
            Target::Static(endpoints) => {
                let endpoints = endpoints
                    .iter()
                    .map(|uri| endpoint(uri, connect_timeout))
                    .collect::<Result<Vec<_>, _>>()?;
                Channel::balance_list(endpoints.into_iter())
            }
            Target::Dns { host, port } => {
                let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
                tasks.spawn(resolve_forever(
                    name.to_owned(),
                    host,
                    port,
                    connect_timeout,
                    changes,
                    shutdown.clone(),
                ));
                channel
            }
            Target::Kubernetes(target) => {
                let client = kubernetes.ok_or_else(|| {
                    format!("upstream `{name}`: a kubernetes target needs an API client")
                })?;
                let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
                tasks.spawn(kubernetes::follow_endpoint_slices(
                    name.to_owned(),
                    client,
                    target,
                    connect_timeout,
                    changes,
                    shutdown.clone(),
                ));
                channel
            }
        };
        Ok(Upstream {
            name: name.to_owned(),
            channel,
            breaker: CircuitBreaker::new(name.to_owned(), policy.breaker.clone()),
            bulkhead: Bulkhead::new(
                name.to_owned(),
                policy.max_concurrent,
                Duration::from_millis(policy.max_queue_wait_ms),
            ),
            retry_budget: RetryBudget::new(0.2, 10, Duration::from_secs(10)),
            backoff: Backoff {
                base: Duration::from_millis(policy.retry_base_ms),
                max: Duration::from_millis(policy.retry_max_ms),
            },
            max_retries: policy.max_retries,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Makes one logical call. `attempt` receives the channel and the time left, which it
    /// should set as the request's timeout so the deadline travels downstream (`grpc-timeout`).
    pub async fn call<T, F, Fut>(
        &self,
        options: CallOptions,
        mut attempt: F,
    ) -> Result<T, CallError>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + options.deadline;
        self.retry_budget.deposit();
        let mut retries = 0;
        loop {
            let permit = self
                .breaker
                .try_acquire()
                .map_err(|open| CallError::CircuitOpen {
                    upstream: self.name.clone(),
                    retry_after: open.retry_after,
                })?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let slot = tokio::time::timeout(remaining, self.bulkhead.acquire())
                .await
                .map_err(|_| CallError::DeadlineExceeded {
                    upstream: self.name.clone(),
                })?
                .map_err(|_| CallError::Overloaded {
                    upstream: self.name.clone(),
                })?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome =
                tokio::time::timeout(remaining, attempt(self.channel.clone(), remaining)).await;
            drop(slot);
            let status = match outcome {
                Ok(Ok(answer)) => {
                    permit.success();
                    return Ok(answer);
                }
                // tonic's own timer (the `grpc-timeout` we set) can fire in the same tick as
                // ours and reports CANCELLED: past the deadline that is a timeout, a fault.
                Ok(Err(status))
                    if status.code() == Code::Cancelled && Instant::now() >= deadline =>
                {
                    permit.fault();
                    return Err(CallError::DeadlineExceeded {
                        upstream: self.name.clone(),
                    });
                }
                Ok(Err(status)) => status,
                Err(_elapsed) => {
                    permit.fault();
                    return Err(CallError::DeadlineExceeded {
                        upstream: self.name.clone(),
                    });
                }
            };
            if is_fault(status.code()) {
                permit.fault();
            } else {
                // A business answer: the downstream is healthy.
                permit.success();
                return Err(CallError::Status(status));
            }
            let may_retry = options.retryable
                && status.code() == Code::Unavailable
                && retries < self.max_retries
                && self.retry_budget.try_withdraw();
            if !may_retry {
                return Err(CallError::Status(status));
            }
            let pause = self.backoff.delay(retries);
            if Instant::now() + pause >= deadline {
                return Err(CallError::Status(status));
            }
            retries += 1;
            tracing::debug!(upstream = %self.name, retries, "retrying after UNAVAILABLE");
            tokio::time::sleep(pause).await;
        }
    }
}

fn endpoint(uri: &str, connect_timeout: Duration) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(uri.to_owned())
        .map_err(|error| format!("`{uri}`: {error}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// The API client of a pod: its service account token and the cluster's CA, namespace from
/// the mounted secret (what `kube::Config::incluster` reads).
fn in_cluster_client() -> Result<kube::Client, String> {
    let config = kube::Config::incluster()
        .map_err(|error| format!("no in-cluster Kubernetes configuration ({error})"))?;
    kube::Client::try_from(config).map_err(|error| error.to_string())
}

/// Keeps a balanced channel's endpoints equal to what `host` resolves to.
async fn resolve_forever(
    upstream: String,
    host: String,
    port: u16,
    connect_timeout: Duration,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
    shutdown: Shutdown,
) {
    let mut known: HashSet<SocketAddr> = HashSet::new();
    loop {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addresses) => {
                let current: HashSet<SocketAddr> = addresses.collect();
                for added in current.difference(&known) {
                    let Ok(endpoint) = endpoint(&format!("http://{added}"), connect_timeout) else {
                        continue;
                    };
                    if changes
                        .send(Change::Insert(*added, endpoint))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                for removed in known.difference(&current) {
                    if changes.send(Change::Remove(*removed)).await.is_err() {
                        return;
                    }
                }
                if current != known {
                    tracing::info!(%upstream, %host, endpoints = current.len(), "endpoints changed");
                }
                known = current;
            }
            Err(error) => {
                // Keep the last known endpoints: a resolver hiccup must not empty the pool.
                tracing::warn!(%upstream, %host, %error, "resolving upstream failed");
            }
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(DNS_REFRESH) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_say_why_not() {
        assert_eq!(
            Target::parse("http://127.0.0.1:5000"),
            Ok(Target::Static(vec!["http://127.0.0.1:5000".into()]))
        );
        assert_eq!(
            Target::parse("http://a:1, http://b:2"),
            Ok(Target::Static(vec![
                "http://a:1".into(),
                "http://b:2".into()
            ]))
        );
        assert_eq!(
            Target::parse("dns://catalog.shop.svc.cluster.local:50051"),
            Ok(Target::Dns {
                host: "catalog.shop.svc.cluster.local".into(),
                port: 50051
            })
        );
        assert!(Target::parse("").is_err());
        assert!(Target::parse("dns://catalog").is_err());
        assert!(Target::parse("catalog:50051").is_err());
        assert!(matches!(
            Target::parse("kubernetes:///catalog.shop:grpc"),
            Ok(Target::Kubernetes(_))
        ));
        assert!(Target::parse("kubernetes:///catalog").is_err());
    }

    #[test]
    fn only_faults_count_against_a_downstream() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Unknown,
        ] {
            assert!(is_fault(code), "{code:?}");
        }
        for code in [
            Code::NotFound,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::ResourceExhausted,
            Code::Cancelled,
        ] {
            assert!(!is_fault(code), "{code:?}");
        }
    }
}
