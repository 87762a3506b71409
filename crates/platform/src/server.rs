//! The gRPC server every service runs, and its admin HTTP port.
//!
//! - gRPC port: the service's own RPCs, `grpc.health.v1` and reflection. Health has two names a
//!   prober can ask for: `liveness` (SERVING while the process runs) and `readiness` (SERVING only
//!   while the service accepts work; also reported for the empty name and each service name).
//! - Admin port (HTTP): `/metrics` (Prometheus), `/healthz`, `/readyz`, and whatever operator
//!   routes the service adds with [`ServiceHost::with_admin_routes`] (dead-letter replay). Never
//!   the public port.
//! - Shutdown, like linkerd2-proxy: readiness off → lameduck (load balancers stop sending) →
//!   stop accepting and drain in-flight calls → give up after a bounded grace period.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::Instrument;

use crate::shutdown::Shutdown;
use crate::telemetry;

/// The health service name probes use for liveness.
pub const LIVENESS: &str = "liveness";
/// The health service name probes use for readiness.
pub const READINESS: &str = "readiness";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where gRPC is served. Port 0 picks a free port (tests, the embedded fleet).
    pub grpc_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin_addr: SocketAddr,
    /// After readiness turns off, keep serving this long so load balancers notice.
    pub lameduck_ms: u64,
    /// After that, wait at most this long for in-flight calls to finish.
    pub grace_ms: u64,
    /// The longest any single call may run on this server, whatever the client asked.
    pub max_call_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            lameduck_ms: 2_000,
            grace_ms: 10_000,
            max_call_ms: DEFAULT_MAX_CALL_MS,
        }
    }
}

/// Above every deadline a route declares (the bulk import allows 120 s), so a caller's own
/// deadline, not this cap, decides when a call gives up.
const DEFAULT_MAX_CALL_MS: u64 = 300_000;

impl ServerConfig {
    /// Both ports on loopback, picked free, no lameduck: the embedded fleet and tests.
    pub fn loopback() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lameduck_ms: 0,
            grace_ms: 5_000,
            max_call_ms: DEFAULT_MAX_CALL_MS,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.grpc_addr.port() != 0 && self.grpc_addr.port() == self.admin_addr.port() {
            return Err("server.grpc_addr and server.admin_addr must use different ports".into());
        }
        if self.max_call_ms == 0 || self.max_call_ms > 3_600_000 {
            return Err("server.max_call_ms must be between 1 and 3600000".into());
        }
        if self.lameduck_ms > 600_000 || self.grace_ms > 600_000 {
            return Err("server.lameduck_ms and server.grace_ms must be at most 600000".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Whether the service accepts work; shared by the admin port and the health service.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release)
    }
}

/// A service's ports, bound before anything else so their addresses are known early. The admin
/// port answers from the moment of binding (`/healthz` 200, `/readyz` 503), so probes see a
/// live, not-ready service while it migrates or seeds.
pub struct ServiceHost {
    name: &'static str,
    config: ServerConfig,
    grpc: TcpListener,
    admin_addr: SocketAddr,
    admin: AdminPort,
    readiness: Readiness,
    extra_admin_routes: ExtraAdminRoutes,
}

/// Operator routes a service adds to its admin port after binding it. The port already serves
/// from `bind` on, so it looks them up per request instead of being rebuilt.
#[derive(Clone, Default)]
struct ExtraAdminRoutes(Arc<RwLock<axum::Router>>);

impl ExtraAdminRoutes {
    fn add(&self, routes: axum::Router) {
        // Only ever held to swap or clone the router, never across an await; a poisoned lock
        // still holds a whole router.
        let mut current = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let merged = std::mem::take(&mut *current).merge(routes);
        *current = merged;
    }

    fn current(&self) -> axum::Router {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The running admin port; stopped when dropped (a host that never serves leaves nothing behind).
struct AdminPort(tokio::task::JoinHandle<()>);

impl Drop for AdminPort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ServiceHost {
    pub async fn bind(name: &'static str, config: &ServerConfig) -> Result<Self, ServeError> {
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "gRPC port",
                addr: config.grpc_addr,
                source,
            })?;
        let admin = TcpListener::bind(config.admin_addr)
            .await
            .map_err(|source| ServeError::Bind {
                what: "admin port",
                addr: config.admin_addr,
                source,
            })?;
        let admin_addr = admin.local_addr().unwrap_or(config.admin_addr);
        let readiness = Readiness::default();
        let extra_admin_routes = ExtraAdminRoutes::default();
        let admin = AdminPort(tokio::spawn(serve_admin(
            admin,
            readiness.clone(),
            extra_admin_routes.clone(),
        )));
        Ok(Self {
            name,
            config: config.clone(),
            grpc,
            admin_addr,
            admin,
            readiness,
            extra_admin_routes,
        })
    }

    /// Adds operator routes (e.g. `events::admin_routes`) to the admin port, which serves them
    /// at once. Their paths must not clash with `/metrics`, `/healthz`, `/readyz` or routes
    /// added before (axum panics on a duplicate route, a programming error).
    pub fn with_admin_routes(self, routes: axum::Router) -> Self {
        self.extra_admin_routes.add(routes);
        self
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.grpc_addr)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves `routes` (plus health and reflection) until `shutdown` fires, then drains.
    /// `service_names` are the gRPC services in `routes`, reported in health.
    pub async fn serve(
        self,
        routes: Routes,
        service_names: &[&str],
        shutdown: Shutdown,
    ) -> Result<(), ServeError> {
        let ServiceHost {
            name,
            config,
            grpc,
            admin_addr,
            admin,
            readiness,
            extra_admin_routes: _,
        } = self;
        let grpc_addr = grpc.local_addr().ok();
        // The admin port (running since `bind`) lives until the gRPC server has drained, so
        // probes see `/readyz` turn 503 during the lameduck period instead of a refused
        // connection.

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let mut readiness_names: Vec<String> = vec![READINESS.into(), String::new()];
        readiness_names.extend(service_names.iter().map(|name| name.to_string()));
        set_readiness(&health, &readiness_names, ServingStatus::NotServing).await;

        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pillivery_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|error| {
                tracing::error!(%error, "reflection descriptors did not load");
                error
            })
            .ok();

        let mut builder = tonic::transport::Server::builder()
            .timeout(Duration::from_millis(config.max_call_ms))
            .layer(TraceLayer { service: name });
        let mut router = builder.add_routes(routes).add_service(health_service);
        if let Some(reflection) = reflection {
            router = router.add_service(reflection);
        }

        let lameduck = Duration::from_millis(config.lameduck_ms);
        let stop_accepting = {
            let shutdown = shutdown.clone();
            let health = health.clone();
            let readiness = readiness.clone();
            let readiness_names = readiness_names.clone();
            async move {
                shutdown.wait().await;
                readiness.set(false);
                set_readiness(&health, &readiness_names, ServingStatus::NotServing).await;
                tracing::info!(
                    service = name,
                    lameduck_ms = lameduck.as_millis() as u64,
                    "not ready; lameduck"
                );
                tokio::time::sleep(lameduck).await;
                tracing::info!(service = name, "draining in-flight calls");
            }
        };
        let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
        let server = router.serve_with_incoming_shutdown(incoming, stop_accepting);
        tokio::pin!(server);

        readiness.set(true);
        set_readiness(&health, &readiness_names, ServingStatus::Serving).await;
        tracing::info!(service = name, grpc = ?grpc_addr, admin = %admin_addr, "serving");

        let grace = lameduck + Duration::from_millis(config.grace_ms);
        let result = tokio::select! {
            result = &mut server => result.map_err(ServeError::from),
            () = async { shutdown.wait().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(service = name, grace_ms = config.grace_ms, "grace period over; abandoning in-flight calls");
                Ok(())
            }
        };
        drop(admin);
        tracing::info!(service = name, "stopped");
        result
    }
}

async fn set_readiness(health: &HealthReporter, names: &[String], status: ServingStatus) {
    for name in names {
        health.set_service_status(name, status).await;
    }
}

async fn serve_admin(listener: TcpListener, readiness: Readiness, extra: ExtraAdminRoutes) {
    use axum::routing::get;
    use tower::ServiceExt;
    let ready_for_probe = readiness.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    telemetry::metrics_handle().render(),
                )
            }),
        )
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready_for_probe.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
        .fallback(move |request: axum::extract::Request| {
            let routes = extra.current();
            async move {
                // An empty router answers 404 itself, as the admin port did before.
                match routes.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        });
    let served = axum::serve(listener, app).await;
    if let Err(error) = served {
        tracing::error!(%error, "admin port failed");
    }
}

/// Opens a span per incoming call, continuing the caller's W3C trace.
#[derive(Clone, Copy)]
struct TraceLayer {
    service: &'static str,
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone)]
struct TraceService<S> {
    inner: S,
    service: &'static str,
}

impl<S, B> tower::Service<http::Request<B>> for TraceService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = tracing::info_span!(
            "grpc.request",
            service = self.service,
            rpc = %request.uri().path(),
            request_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        telemetry::continue_trace(&span, &telemetry::HeaderCarrier(request.headers()));
        if let Some(request_id) = request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
        {
            span.record("request_id", request_id);
        }
        Box::pin(self.inner.call(request).instrument(span))
    }
}

/// The name a generated server reports, for [`ServiceHost::serve`]'s health list.
pub fn service_name<S: NamedService>() -> &'static str {
    S::NAME
}

/// Polls `grpc.health.v1` at `addr` until `service` (e.g. [`READINESS`]) is SERVING, or fails
/// after `timeout`. Used by the embedded fleet before it announces itself, and by tests.
pub async fn wait_until_serving(
    addr: SocketAddr,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("never answered");
    while tokio::time::Instant::now() < deadline {
        let attempt = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|error| error.to_string())?
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .await
                .map_err(|error| error.to_string())?;
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .map_err(|status| status.message().to_owned())?;
            Ok::<i32, String>(answer.into_inner().status)
        };
        match tokio::time::timeout(Duration::from_secs(1), attempt).await {
            Ok(Ok(status))
                if status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 =>
            {
                return Ok(());
            }
            Ok(Ok(status)) => last_error = format!("status {status}"),
            Ok(Err(error)) => last_error = error,
            Err(_) => last_error = "health check timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{addr} not serving `{service}`: {last_error}"))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// A service whose RPCs are not built yet: it binds its ports, migrates its own database with
/// `M`, and serves health, reflection and metrics, so the fleet and its probes are complete while
/// its contract is being written.
pub struct MigratedService<M> {
    host: ServiceHost,
    database: crate::db::DatabaseConfig,
    migrator: std::marker::PhantomData<M>,
}

impl<M: sea_orm_migration::MigratorTrait> MigratedService<M> {
    pub async fn bind(
        name: &'static str,
        server: &ServerConfig,
        database: crate::db::DatabaseConfig,
    ) -> Result<Self, StartError> {
        Ok(Self {
            host: ServiceHost::bind(name, server).await?,
            database,
            migrator: std::marker::PhantomData,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// Migrates, then serves until `shutdown`.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), StartError> {
        let _database = crate::db::connect_and_migrate::<M>(&self.database).await?;
        self.host.serve(Routes::default(), &[], shutdown).await?;
        Ok(())
    }
}
