//! The order service: carts, checkout, order history, subscriptions (SPEC section 5), and the
//! internal calls the payment service, the scheduler and the catalog make.
//!
//! Rules live in [`domain`] (no I/O), SQL in [`store`], the use cases in [`service`], wire
//! mapping in [`grpc`], the catalog edge in [`clients`], published and consumed events in
//! [`events`]. It owns carts, orders, order lines and subscriptions in its own database, so any
//! replica serves any request.
//!
//! Besides the RPCs, a running service keeps three tracked tasks until shutdown: the outbox
//! relay (events to the bus), the `UserWithdrawn` consumer, and the unpaid-order sweep.
#![forbid(unsafe_code)]

pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use pillivery_platform::auth::TokenVerifier;
use pillivery_platform::events::{BusError, Consumer, EventBus, Relay};
use pillivery_platform::kv::{KeyValueStore, KvError};
use pillivery_platform::server::{ServeError, ServiceHost, service_name};
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_platform::time::{SharedClock, system_clock};
use pillivery_proto::order::cart_service_server::CartServiceServer;
use pillivery_proto::order::order_internal_service_server::OrderInternalServiceServer;
use pillivery_proto::order::order_service_server::OrderServiceServer;
use pillivery_proto::order::subscription_service_server::SubscriptionServiceServer;

pub use crate::config::OrderConfig;
use crate::service::OrderService;
use crate::store::OrderStore;

/// How long one key-value operation (the relay's lock) may take.
const KV_OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("configuration: {0}")]
    Config(String),
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
    #[error("key-value store: {0}")]
    KeyValue(#[from] KvError),
}

/// The service with its ports bound, not yet serving.
pub struct BoundOrder {
    config: OrderConfig,
    host: ServiceHost,
    verifier: TokenVerifier,
    clock: SharedClock,
    bus: Option<EventBus>,
    key_value: Option<KeyValueStore>,
}

impl BoundOrder {
    pub async fn bind(config: OrderConfig) -> Result<BoundOrder, StartError> {
        // Before any port is bound: a bad JWKS is a configuration error, not a 401 per call.
        let keys = config.verification_keys().map_err(StartError::Config)?;
        let verifier = TokenVerifier::new(keys, config.tokens.clone());
        let host = ServiceHost::bind("order", &config.server).await?;
        Ok(BoundOrder {
            config,
            host,
            verifier,
            clock: system_clock(),
            bus: None,
            key_value: None,
        })
    }

    /// Where "now" comes from (tests move a manual clock to expire unpaid orders).
    pub fn with_clock(mut self, clock: SharedClock) -> BoundOrder {
        self.clock = clock;
        self
    }

    /// Publishes to and consumes from `bus` instead of the one `events.bus_url` names: the
    /// embedded fleet gives every service one in-process bus.
    pub fn with_event_bus(mut self, bus: EventBus) -> BoundOrder {
        self.bus = Some(bus);
        self
    }

    /// Takes the relay's lock in `store` instead of the one `redis_url` names.
    pub fn with_key_value_store(mut self, store: KeyValueStore) -> BoundOrder {
        self.key_value = Some(store);
        self
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// Migrates, starts the relay, the consumer and the sweep, then serves until `shutdown`;
    /// the tasks are stopped and awaited before it returns.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), StartError> {
        let BoundOrder {
            config,
            host,
            verifier,
            clock,
            bus,
            key_value,
        } = self;
        let database =
            pillivery_platform::db::connect_and_migrate::<store::Migrator>(&config.database)
                .await?;
        let bus = match bus {
            Some(bus) => bus,
            None => EventBus::connect(&config.events).await?,
        };
        let key_value = match (key_value, &config.redis_url) {
            (Some(store), _) => store,
            (None, Some(url)) => {
                KeyValueStore::connect_redis(url, &config.redis_key_prefix, KV_OPERATION_TIMEOUT)
                    .await?
            }
            (None, None) => KeyValueStore::in_memory(),
        };
        let tasks = Tasks::new();
        let stop = shutdown.child();
        let catalog = clients::CatalogClient::new(&config.catalog, &tasks, &stop)
            .map_err(StartError::Config)?;
        let relay = Relay::new(
            "order",
            database.clone(),
            bus.clone(),
            key_value,
            &config.events,
        )
        .spawn(&tasks, &stop);
        let store = OrderStore::new(database.clone(), config.business_time_zone).with_relay(relay);
        let consumer = Consumer::new(
            events::CONSUMER_GROUP,
            &[events::USER_STREAM],
            database,
            bus,
            events::UserWithdrawnHandler::new(store.clone(), clock.clone()),
            &config.events,
        );
        // Dead letters are listed and replayed on the admin port (operators only).
        let host = host.with_admin_routes(pillivery_platform::events::admin_routes(
            consumer.dead_letters(),
        ));
        consumer.spawn(&tasks, &stop);
        let service = OrderService::new(store, catalog, clock, config.unpaid_order_timeout());
        tasks.spawn(sweep_unpaid_orders(
            service.clone(),
            Duration::from_millis(config.unpaid_sweep_interval_ms),
            stop.clone(),
        ));

        let customer = grpc::Customer::new(service.clone(), verifier);
        let routes =
            tonic::service::Routes::new(CartServiceServer::new(grpc::CartGrpc(customer.clone())))
                .add_service(OrderServiceServer::new(grpc::OrderGrpc(customer.clone())))
                .add_service(SubscriptionServiceServer::new(grpc::SubscriptionGrpc(
                    customer,
                )))
                // Internal: no token, reachable only on the fleet's network, never bound to REST.
                .add_service(OrderInternalServiceServer::new(grpc::OrderInternalGrpc(
                    service,
                )));
        let served = host
            .serve(
                routes,
                &[
                    service_name::<CartServiceServer<grpc::CartGrpc>>(),
                    service_name::<OrderServiceServer<grpc::OrderGrpc>>(),
                    service_name::<SubscriptionServiceServer<grpc::SubscriptionGrpc>>(),
                    service_name::<OrderInternalServiceServer<grpc::OrderInternalGrpc>>(),
                ],
                shutdown,
            )
            .await;
        // The server has drained (or failed): stop the tasks and wait for them either way.
        stop.trigger();
        tasks.close();
        tasks.wait().await;
        served?;
        Ok(())
    }
}

/// Cancels orders unpaid past the timeout, every `interval`, until `shutdown`. Every replica
/// runs it: each cancellation is a guarded transition, so overlapping sweeps are harmless.
async fn sweep_unpaid_orders(service: OrderService, interval: Duration, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = ticks.tick() => {}
        }
        match service.cancel_unpaid_orders().await {
            Ok(0) => {}
            Ok(canceled) => tracing::info!(canceled, "unpaid orders cancelled"),
            // The next tick tries again; nothing was half done (each order is one transaction).
            Err(error) => tracing::warn!(%error, "unpaid-order sweep failed"),
        }
    }
}

/// Binds the service's ports (the database is migrated when it starts serving).
pub async fn bind(config: OrderConfig) -> Result<BoundOrder, StartError> {
    BoundOrder::bind(config).await
}

/// Binds and serves until `shutdown`.
pub async fn run(config: OrderConfig, shutdown: Shutdown) -> Result<(), StartError> {
    bind(config).await?.serve(shutdown).await
}
