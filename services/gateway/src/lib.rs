//! The REST gateway: the only public port of the fleet.
//!
//! It serves exactly the RPCs annotated with `google.api.http` in the exposed services'
//! contracts, transcoding JSON to gRPC and back from descriptors alone (no handler per route),
//! applying each RPC's declared policy, and calling services through the platform's resilient
//! client (deadline, circuit breaker, bulkhead, safe retries). `GET /api/openapi.json` is
//! generated from the same route table.
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod errors;
pub mod http;
pub mod openapi;
pub mod routes;
pub mod transcode;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pillivery_platform::auth::TokenVerifier;
use pillivery_platform::client::Upstream;
use pillivery_platform::kv::KeyValueStore;
use pillivery_platform::server::ServiceHost;
use pillivery_platform::shutdown::{Shutdown, Tasks};
use tokio::net::TcpListener;

pub use crate::config::{GatewayConfig, GatewayUpstream};
use crate::routes::Route;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("route table: {0}")]
    Routes(String),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("cannot bind the public port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] pillivery_platform::server::ServeError),
    #[error("public port failed: {0}")]
    Http(std::io::Error),
    #[error("token blacklist store: {0}")]
    KeyValue(String),
}

/// A gateway whose ports are bound and whose route table is built, not yet serving.
pub struct BoundGateway {
    config: GatewayConfig,
    routes: Vec<Route>,
    http: TcpListener,
    host: ServiceHost,
    key_value: Option<KeyValueStore>,
}

impl BoundGateway {
    pub async fn bind(config: GatewayConfig) -> Result<BoundGateway, GatewayError> {
        let routes = routes::build_routes(
            pillivery_proto::descriptor_pool(),
            &config.exposed_services(),
        )
        .map_err(GatewayError::Routes)?;
        let addr = SocketAddr::new(config.http_host, config.http_port);
        let http = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let host = ServiceHost::bind("gateway", &config.server).await?;
        Ok(BoundGateway {
            config,
            routes,
            http,
            host,
            key_value: None,
        })
    }

    /// Uses this store for the token blacklist instead of `redis_url` (the embedded fleet shares
    /// one in-process store between the gateway and the user service).
    pub fn with_key_value_store(mut self, store: KeyValueStore) -> BoundGateway {
        self.key_value = Some(store);
        self
    }

    /// The public REST address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(self.config.http_host, self.config.http_port))
    }

    /// The gateway's own gRPC health port.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// Serves until `shutdown`, then stops accepting after the lameduck period and drains.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), GatewayError> {
        let BoundGateway {
            config,
            routes,
            http,
            host,
            key_value,
        } = self;
        let key_value = match (key_value, &config.redis_url) {
            (Some(store), _) => store,
            (None, Some(url)) => KeyValueStore::connect_redis(
                url,
                &config.redis_key_prefix,
                Duration::from_millis(200),
            )
            .await
            .map_err(|error| GatewayError::KeyValue(error.to_string()))?,
            (None, None) => KeyValueStore::in_memory(),
        };
        let verifier = TokenVerifier::new(
            config.verification_keys().map_err(GatewayError::Routes)?,
            config.tokens.clone(),
        );
        let tasks = Tasks::new();
        let mut upstreams = HashMap::new();
        for (name, upstream) in &config.upstreams {
            let client = Upstream::new(name, &upstream.edge(), &tasks, &shutdown)
                .map_err(GatewayError::Upstream)?;
            upstreams.insert(name.clone(), client);
        }
        let openapi = serde_json::to_vec(&openapi::document(&routes))
            .map_err(|error| GatewayError::Routes(error.to_string()))?;
        let gateway = Arc::new(http::Gateway {
            upstreams,
            default_deadline: Duration::from_millis(config.default_deadline_ms),
            max_body_bytes: config.max_body_bytes,
            trust_forwarded_for: config.trust_forwarded_for,
            openapi: openapi.into(),
            verifier,
            key_value,
        });
        let app = http::router(gateway, routes, &config.cors_origins());

        let lameduck = Duration::from_millis(config.server.lameduck_ms);
        let grace = Duration::from_millis(config.server.grace_ms);
        let stop_accepting = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.wait().await;
                tokio::time::sleep(lameduck).await;
            }
        };
        let public = axum::serve(
            http,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop_accepting);
        tracing::info!(addr = ?public.local_addr().ok(), "gateway listening");
        let health = host.serve(tonic::service::Routes::default(), &[], shutdown.clone());
        let public = async {
            tokio::select! {
                result = public.into_future() => result.map_err(GatewayError::Http),
                () = async { shutdown.wait().await; tokio::time::sleep(lameduck + grace).await } => {
                    tracing::warn!("grace period over; abandoning in-flight requests");
                    Ok(())
                }
            }
        };
        let (public, health) = tokio::join!(public, health);
        tasks.close();
        tasks.wait().await;
        public?;
        health?;
        Ok(())
    }
}

/// Binds and serves until `shutdown`.
pub async fn run(config: GatewayConfig, shutdown: Shutdown) -> Result<(), GatewayError> {
    BoundGateway::bind(config).await?.serve(shutdown).await
}
