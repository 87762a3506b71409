//! The payment service: it owns payment attempts, renewal charges, refunds and PG subscription
//! keys (SIDs), and is the only service that talks to the payment gateway (SPEC section 6).
//!
//! Rules live in [`domain`] (no I/O), SQL in [`store`], the PG behind [`provider`], the flows
//! that tie them together in [`payments`], wire mapping in [`grpc`], the order service edge in
//! [`clients`]. Served: `PaymentService` (customer RPCs, verified against [`PaymentConfig::jwks`],
//! and the PG's public redirects) and `PaymentInternalService` (the scheduler's charges, refunds,
//! key deactivation; no token, internal network only). A reconciler task reports approved and
//! refunded payments the order service has not confirmed yet, and a consumer of the order
//! service's events ([`events`]) refunds REFUND_PENDING orders and links and deactivates
//! subscription keys; its dead letters are on the admin port (`/admin/events/dead-letters`).
#![forbid(unsafe_code)]

pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod payments;
pub mod provider;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use pillivery_platform::auth::TokenVerifier;
use pillivery_platform::client::Upstream;
use pillivery_platform::events::{BusError, Consumer, EventBus};
use pillivery_platform::server::{ServeError, ServiceHost, service_name};
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_proto::payment::payment_internal_service_server::PaymentInternalServiceServer;
use pillivery_proto::payment::payment_service_server::PaymentServiceServer;

use crate::clients::OrderClient;
pub use crate::config::PaymentConfig;
use crate::payments::{FlowSettings, Payments};
use crate::provider::PaymentProvider;
use crate::provider::kakaopay::KakaoPay;
use crate::store::PaymentStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("configuration: {0}")]
    Config(String),
    #[error("event bus: {0}")]
    EventBus(#[from] BusError),
}

/// The service with its ports bound, not yet serving.
pub struct BoundPayment {
    config: PaymentConfig,
    host: ServiceHost,
    verifier: TokenVerifier,
    provider: Arc<dyn PaymentProvider>,
    /// Set by the embedded fleet (one in-process bus for every service); otherwise the bus
    /// named by `events.bus_url` is connected when serving starts.
    bus: Option<EventBus>,
}

impl BoundPayment {
    /// Binds with the KakaoPay client `config.provider` describes (KakaoPay or the sandbox).
    pub async fn bind(config: PaymentConfig) -> Result<BoundPayment, StartError> {
        // The Prometheus recorder before the PG breaker registers its gauge, so `/metrics`
        // shows the breaker from its first state on.
        let _ = pillivery_platform::telemetry::metrics_handle();
        let provider = KakaoPay::new(&config.provider).map_err(StartError::Config)?;
        Self::bind_with_provider(config, Arc::new(provider)).await
    }

    /// Binds with another PG behind the same trait (a second provider, or a test double).
    pub async fn bind_with_provider(
        config: PaymentConfig,
        provider: Arc<dyn PaymentProvider>,
    ) -> Result<BoundPayment, StartError> {
        // Before any port is bound: a bad JWKS is a configuration error, not a 401 per call.
        let keys = config.verification_keys().map_err(StartError::Config)?;
        let verifier = TokenVerifier::new(keys, config.tokens.clone());
        let host = ServiceHost::bind("payment", &config.server).await?;
        Ok(BoundPayment {
            config,
            host,
            verifier,
            provider,
            bus: None,
        })
    }

    /// Consumes the order service's events from `bus` instead of the one `events.bus_url`
    /// names: the embedded fleet gives every service one in-process bus.
    pub fn with_event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Sets where the buyer's browser reaches the gateway, once it is known (the embedded fleet
    /// binds the gateway after the services it routes to).
    pub fn with_public_base_url(mut self, public_base_url: impl Into<String>) -> Self {
        self.config.public_base_url = public_base_url.into();
        self
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// Migrates, starts the reconciler and the event consumer, then serves until `shutdown`;
    /// both tasks are stopped and awaited before it returns.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), StartError> {
        let BoundPayment {
            config,
            host,
            verifier,
            provider,
            bus,
        } = self;
        let database = pillivery_platform::db::connect_and_migrate::<store::migration::Migrator>(
            &config.database,
        )
        .await?;
        let bus = match bus {
            Some(bus) => bus,
            None => EventBus::connect(&config.events).await?,
        };
        let tasks = Tasks::new();
        // The service's own tasks stop with it, also when the server fails on its own.
        let own = shutdown.child();
        let upstream =
            Upstream::new("order", &config.order, &tasks, &own).map_err(StartError::Config)?;
        let payments = Arc::new(Payments::new(
            PaymentStore::new(database.clone()),
            provider,
            OrderClient::new(upstream),
            FlowSettings::from_config(&config),
        ));
        tasks.spawn(reconcile_forever(
            payments.clone(),
            config.reconcile_interval(),
            own.clone(),
        ));
        let consumer = Consumer::new(
            events::CONSUMER_GROUP,
            &[events::ORDER_STREAM],
            database,
            bus,
            events::PaymentEvents::new(payments.clone()),
            &config.events,
        );
        let host = host.with_admin_routes(pillivery_platform::events::admin_routes(
            consumer.dead_letters(),
        ));
        consumer.spawn(&tasks, &own);
        let routes = tonic::service::Routes::new(PaymentServiceServer::new(
            grpc::PaymentGrpc::new(payments.clone(), verifier),
        ))
        .add_service(PaymentInternalServiceServer::new(
            grpc::PaymentInternalGrpc::new(payments),
        ));
        let served = host
            .serve(
                routes,
                &[
                    service_name::<PaymentServiceServer<grpc::PaymentGrpc>>(),
                    service_name::<PaymentInternalServiceServer<grpc::PaymentInternalGrpc>>(),
                ],
                shutdown,
            )
            .await;
        own.trigger();
        tasks.close();
        tasks.wait().await;
        served?;
        Ok(())
    }
}

/// Reports approved / refunded payments the order service has not confirmed, every `interval`,
/// so a crash or an order-service outage between "approved" and "order PAID" loses nothing.
/// Every replica runs it: `MarkOrderPaid` is idempotent per tid, so overlapping rounds are
/// harmless.
async fn reconcile_forever(
    payments: Arc<Payments>,
    interval: std::time::Duration,
    shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match payments.reconcile().await {
            Ok(0) => {}
            Ok(left) => tracing::info!(left, "payments still unconfirmed by the order service"),
            Err(error) => {
                tracing::warn!(%error, "reconciling payments with the order service failed")
            }
        }
    }
}

/// Binds and serves until `shutdown`.
pub async fn run(config: PaymentConfig, shutdown: Shutdown) -> Result<(), StartError> {
    BoundPayment::bind(config).await?.serve(shutdown).await
}

/// Binds the service's ports (the database is migrated when it starts serving).
pub async fn bind(config: PaymentConfig) -> Result<BoundPayment, StartError> {
    BoundPayment::bind(config).await
}
