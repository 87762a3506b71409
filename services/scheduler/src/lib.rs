//! The scheduler service: recurring billing of subscriptions (SPEC section 7). It owns billing
//! jobs and their attempts, in its own database.
//!
//! Rules live in [`domain`] (no I/O), SQL in [`store`] (the lease-based claim included), the
//! run itself in [`billing`], the order and payment edges in [`clients`], the subscription
//! events in [`events`], wire mapping in [`grpc`]. `docs/scheduler.md` explains leases,
//! retries, catch-up and how to operate it.
//!
//! Besides the RPCs, a running service keeps two tracked tasks until shutdown: the billing loop
//! (unless `billing.loop_enabled` is off) and the consumer of subscription events.
#![forbid(unsafe_code)]

pub mod billing;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use pillivery_platform::auth::TokenVerifier;
use pillivery_platform::client::Upstream;
use pillivery_platform::events::{BusError, Consumer, EventBus};
use pillivery_platform::server::{ServeError, ServiceHost, service_name};
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_platform::time::{SharedClock, system_clock};
use pillivery_proto::scheduler::scheduler_admin_service_server::SchedulerAdminServiceServer;
use pillivery_proto::scheduler::scheduler_internal_service_server::SchedulerInternalServiceServer;

use crate::billing::{Biller, BillingSettings};
use crate::clients::Neighbours;
pub use crate::config::SchedulerConfig;
use crate::store::SchedulerStore;

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
}

/// The service with its ports bound, not yet serving.
pub struct BoundScheduler {
    config: SchedulerConfig,
    host: ServiceHost,
    verifier: TokenVerifier,
    clock: SharedClock,
    bus: Option<EventBus>,
}

/// Binds the service's ports (the database is migrated when it starts serving).
pub async fn bind(config: SchedulerConfig) -> Result<BoundScheduler, StartError> {
    BoundScheduler::bind(config).await
}

/// Binds and serves until `shutdown`.
pub async fn run(config: SchedulerConfig, shutdown: Shutdown) -> Result<(), StartError> {
    bind(config).await?.serve(shutdown).await
}

impl BoundScheduler {
    pub async fn bind(config: SchedulerConfig) -> Result<BoundScheduler, StartError> {
        // Before any port is bound: a bad JWKS is a configuration error, not a 401 per call.
        let keys = config.verification_keys().map_err(StartError::Config)?;
        let verifier = TokenVerifier::new(keys, config.tokens.clone());
        let host = ServiceHost::bind("scheduler", &config.server).await?;
        Ok(BoundScheduler {
            config,
            host,
            verifier,
            clock: system_clock(),
            bus: None,
        })
    }

    /// Where "now" comes from: lease deadlines and the loop's business date (tests move a
    /// manual clock to expire a crashed replica's leases).
    pub fn with_clock(mut self, clock: SharedClock) -> BoundScheduler {
        self.clock = clock;
        self
    }

    /// Consumes from `bus` instead of the one `events.bus_url` names: the embedded fleet gives
    /// every service one in-process bus.
    pub fn with_event_bus(mut self, bus: EventBus) -> BoundScheduler {
        self.bus = Some(bus);
        self
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// Migrates, starts the loop and the consumer, then serves until `shutdown`; the tasks are
    /// stopped and awaited before it returns.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), StartError> {
        let BoundScheduler {
            config,
            host,
            verifier,
            clock,
            bus,
        } = self;
        let database =
            pillivery_platform::db::connect_and_migrate::<store::Migrator>(&config.database)
                .await?;
        let bus = match bus {
            Some(bus) => bus,
            None => EventBus::connect(&config.events).await?,
        };
        let tasks = Tasks::new();
        let stop = shutdown.child();
        let order =
            Upstream::new("order", &config.order, &tasks, &stop).map_err(StartError::Config)?;
        let payment =
            Upstream::new("payment", &config.payment, &tasks, &stop).map_err(StartError::Config)?;
        let neighbours = Neighbours::new(
            order,
            payment,
            config.billing.order_deadline(),
            config.billing.charge_deadline(),
        );
        let store = SchedulerStore::new(database.clone());
        // Runs stop claiming as soon as shutdown begins; jobs in flight finish.
        let biller = Arc::new(Biller::new(
            store.clone(),
            neighbours,
            clock.clone(),
            BillingSettings {
                policy: config.retry,
                lease: config.billing.lease(),
                max_in_flight: config.billing.max_in_flight,
            },
            shutdown.clone(),
        ));
        if config.billing.loop_enabled {
            tasks.spawn(billing::run_loop(
                biller.clone(),
                config.business_time_zone,
                config.billing.billing_hour,
                config.billing.loop_interval(),
                shutdown.clone(),
            ));
        }
        let consumer = Consumer::new(
            events::CONSUMER_GROUP,
            &[events::ORDER_STREAM],
            database,
            bus,
            events::SubscriptionEvents::new(clock.clone()),
            &config.events,
        );
        // Dead letters are listed and replayed on the admin port (operators only).
        let host = host.with_admin_routes(pillivery_platform::events::admin_routes(
            consumer.dead_letters(),
        ));
        consumer.spawn(&tasks, &stop);

        let routes = tonic::service::Routes::new(SchedulerAdminServiceServer::new(
            grpc::SchedulerAdminGrpc::new(biller, verifier),
        ))
        // Internal: no token, reachable only on the fleet's network, never bound to REST.
        .add_service(SchedulerInternalServiceServer::new(
            grpc::SchedulerInternalGrpc::new(store, clock),
        ));
        let served = host
            .serve(
                routes,
                &[
                    service_name::<SchedulerAdminServiceServer<grpc::SchedulerAdminGrpc>>(),
                    service_name::<SchedulerInternalServiceServer<grpc::SchedulerInternalGrpc>>(),
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
