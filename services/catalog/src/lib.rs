//! The catalog service: categories, item search and detail, the main page (SPEC section 4).
//!
//! Rules live in [`domain`] (no I/O), SQL in [`store`], wire mapping in [`grpc`]. Browsing
//! (`CatalogService`), admin item management (`CatalogAdminService`, which verifies the
//! forwarded bearer token against [`CatalogConfig::jwks`]) and the fleet-internal batch read
//! and sales counter (`CatalogInternalService`, no token: internal network only) are served,
//! and reviews (`ReviewService`, see [`reviews`]), which ask the order and user services
//! through [`clients`] when one is written.
//!
//! List pages and the main page go through the two-level [`cache`]; item detail counts a
//! view in [`views`], whose fold task runs beside the server. Both stand on the key-value
//! store ([`kv`]): Redis when `redis_url` is set, else an in-process one, or the store the
//! embedded fleet hands to [`BoundCatalog::bind_with`].
#![forbid(unsafe_code)]

pub mod cache;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod kv;
pub mod reviews;
pub mod store;
pub mod views;

use std::net::SocketAddr;

use pillivery_platform::auth::TokenVerifier;
use pillivery_platform::events::{BusError, Consumer, EventBus};
use pillivery_platform::kv::{KeyValueStore, KvError};
use pillivery_platform::server::{ServeError, ServiceHost, service_name};
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_platform::time::{SharedClock, system_clock};
use pillivery_proto::catalog::catalog_admin_service_server::CatalogAdminServiceServer;
use pillivery_proto::catalog::catalog_internal_service_server::CatalogInternalServiceServer;
use pillivery_proto::catalog::catalog_service_server::CatalogServiceServer;
use pillivery_proto::catalog::review_service_server::ReviewServiceServer;

pub use crate::config::CatalogConfig;
use crate::store::CatalogStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("configuration: {0}")]
    Config(String),
    #[error("seeding demo items: {0}")]
    Seed(#[from] store::StoreError),
    #[error("key-value store: {0}")]
    KeyValue(#[from] KvError),
    #[error("event bus: {0}")]
    EventBus(#[from] BusError),
}

/// The catalog with its ports bound, not yet serving.
pub struct BoundCatalog {
    config: CatalogConfig,
    host: ServiceHost,
    verifier: TokenVerifier,
    kv: KeyValueStore,
    clock: SharedClock,
    /// Set by the embedded fleet (one in-process bus); otherwise `events.bus_url` is connected.
    bus: Option<EventBus>,
}

impl BoundCatalog {
    /// Binds the ports and prepares the key-value store: Redis when `redis_url` is set (an
    /// unreachable Redis stops the start), else an in-process store (one replica only).
    pub async fn bind(config: CatalogConfig) -> Result<BoundCatalog, StartError> {
        let kv = match &config.redis_url {
            Some(url) => {
                KeyValueStore::connect_redis(url, &config.redis_key_prefix, config.kv_timeout())
                    .await?
            }
            None => KeyValueStore::in_memory(),
        };
        BoundCatalog::bind_with(config, kv).await
    }

    /// Binds with a key-value store built by the caller: the embedded fleet shares its one
    /// in-process store this way, and tests share one between two catalogs. `redis_url` and
    /// `redis_key_prefix` of `config` are ignored.
    pub async fn bind_with(
        config: CatalogConfig,
        kv: KeyValueStore,
    ) -> Result<BoundCatalog, StartError> {
        // Before any port is bound: a bad JWKS is a configuration error, not a 401 per call.
        let keys = config.verification_keys().map_err(StartError::Config)?;
        let verifier = TokenVerifier::new(keys, config.tokens.clone());
        let host = ServiceHost::bind("catalog", &config.server).await?;
        Ok(BoundCatalog {
            config,
            host,
            verifier,
            kv,
            clock: system_clock(),
            bus: None,
        })
    }

    /// Dates views by `clock` instead of the system clock (tests move it across midnight).
    pub fn with_clock(mut self, clock: SharedClock) -> BoundCatalog {
        self.clock = clock;
        self
    }

    /// Reaches the order service at `order` for reviews, instead of `config.order`: the
    /// embedded fleet binds the catalog before the order service (which calls the catalog) and
    /// hands the order service's address over once it is bound.
    pub fn with_order_upstream(
        mut self,
        order: pillivery_platform::client::UpstreamConfig,
    ) -> BoundCatalog {
        self.config.order = order;
        self
    }

    /// Consumes sales from `bus` instead of the bus `events.bus_url` names.
    pub fn with_event_bus(mut self, bus: EventBus) -> BoundCatalog {
        self.bus = Some(bus);
        self
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// Migrates, seeds an empty catalog when asked to, then serves until `shutdown`.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), StartError> {
        let database = pillivery_platform::db::connect_and_migrate::<store::migration::Migrator>(
            &self.config.database,
        )
        .await?;
        let store = CatalogStore::new(database);
        // A stop during a long seed (40 000 items) is honoured at once: the seed is one
        // transaction, so dropping it leaves an empty catalog to seed on the next start.
        tokio::select! {
            seeded = seed_if_empty(&store, self.config.demo_items) => seeded?,
            () = shutdown.wait() => return Ok(()),
        }
        let kv = kv::CatalogKv::new(&self.kv);
        let cache = cache::ResponseCache::new(&self.config.cache, kv.clone());
        let views = views::ViewCounter::new(
            kv,
            store.clone(),
            self.config.business_time_zone,
            self.clock,
            self.config.views.clone(),
        );
        // A child signal: the fold stops with the service, and also when serving fails.
        let fold_stop = shutdown.child();
        let tasks = Tasks::new();
        tasks.spawn(views.clone().run_folds(fold_stop.clone()));
        let bus = match self.bus {
            Some(bus) => bus,
            None => EventBus::connect(&self.config.events).await?,
        };
        let sales = Consumer::new(
            events::CONSUMER_GROUP,
            &[events::ORDER_STREAM],
            store.database().clone(),
            bus,
            events::SalesEvents::new(store.clone(), cache.clone()),
            &self.config.events,
        );
        let host = self
            .host
            .with_admin_routes(pillivery_platform::events::admin_routes(
                sales.dead_letters(),
            ));
        sales.spawn(&tasks, &fold_stop);
        // Resolver tasks of `dns://` / `kubernetes:///` targets stop with the fold and the
        // consumer; a bad target stops the start (the binary validated it already).
        let review_clients =
            clients::ReviewClients::new(&self.config.order, &self.config.user, &tasks, &fold_stop)
                .map_err(StartError::Config)?;
        tasks.close();
        let routes = tonic::service::Routes::new(CatalogServiceServer::new(
            grpc::CatalogGrpc::new(store.clone(), cache.clone(), views),
        ))
        .add_service(CatalogAdminServiceServer::new(grpc::CatalogAdminGrpc::new(
            store.clone(),
            cache.clone(),
            self.verifier.clone(),
        )))
        .add_service(ReviewServiceServer::new(reviews::ReviewGrpc::new(
            store.clone(),
            cache.clone(),
            self.verifier,
            review_clients,
        )))
        // Internal: no token, reachable only on the fleet's network, never bound to REST.
        .add_service(CatalogInternalServiceServer::new(
            grpc::CatalogInternalGrpc::new(store, cache),
        ));
        let served = host
            .serve(
                routes,
                &[
                    service_name::<CatalogServiceServer<grpc::CatalogGrpc>>(),
                    service_name::<CatalogAdminServiceServer<grpc::CatalogAdminGrpc>>(),
                    service_name::<ReviewServiceServer<reviews::ReviewGrpc>>(),
                    service_name::<CatalogInternalServiceServer<grpc::CatalogInternalGrpc>>(),
                ],
                shutdown,
            )
            .await;
        fold_stop.trigger();
        tasks.wait().await;
        served?;
        Ok(())
    }
}

/// Fills an empty catalog with `count` demo items; a catalog with any item is left alone.
async fn seed_if_empty(store: &CatalogStore, count: u32) -> Result<(), store::StoreError> {
    if count == 0 || store.count_items().await? > 0 {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let items = domain::demo::demo_items(count as usize);
    store.insert_items(&items).await?;
    tracing::info!(
        items = count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "seeded demo catalog"
    );
    Ok(())
}

/// Binds and serves until `shutdown`.
pub async fn run(config: CatalogConfig, shutdown: Shutdown) -> Result<(), StartError> {
    BoundCatalog::bind(config).await?.serve(shutdown).await
}
