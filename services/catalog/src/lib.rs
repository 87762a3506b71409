//! The catalog service: categories, item search and detail, the main page (SPEC section 4).
//!
//! Rules live in [`domain`] (no I/O), SQL in [`store`], wire mapping in [`grpc`]. Browsing
//! (`CatalogService`), admin item management (`CatalogAdminService`, which verifies the
//! forwarded bearer token against [`CatalogConfig::jwks`]) and the fleet-internal batch read
//! and sales counter (`CatalogInternalService`, no token: internal network only) are served;
//! reviews, views and caching are in the contract but not served yet.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod store;

use std::net::SocketAddr;

use pillivery_platform::auth::TokenVerifier;
use pillivery_platform::server::{ServeError, ServiceHost, service_name};
use pillivery_platform::shutdown::Shutdown;
use pillivery_proto::catalog::catalog_admin_service_server::CatalogAdminServiceServer;
use pillivery_proto::catalog::catalog_internal_service_server::CatalogInternalServiceServer;
use pillivery_proto::catalog::catalog_service_server::CatalogServiceServer;

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
}

/// The catalog with its ports bound, not yet serving.
pub struct BoundCatalog {
    config: CatalogConfig,
    host: ServiceHost,
    verifier: TokenVerifier,
}

impl BoundCatalog {
    pub async fn bind(config: CatalogConfig) -> Result<BoundCatalog, StartError> {
        // Before any port is bound: a bad JWKS is a configuration error, not a 401 per call.
        let keys = config.verification_keys().map_err(StartError::Config)?;
        let verifier = TokenVerifier::new(keys, config.tokens.clone());
        let host = ServiceHost::bind("catalog", &config.server).await?;
        Ok(BoundCatalog {
            config,
            host,
            verifier,
        })
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
        let routes = tonic::service::Routes::new(CatalogServiceServer::new(
            grpc::CatalogGrpc::new(store.clone()),
        ))
        .add_service(CatalogAdminServiceServer::new(grpc::CatalogAdminGrpc::new(
            store.clone(),
            self.verifier,
        )))
        // Internal: no token, reachable only on the fleet's network, never bound to REST.
        .add_service(CatalogInternalServiceServer::new(
            grpc::CatalogInternalGrpc::new(store),
        ));
        self.host
            .serve(
                routes,
                &[
                    service_name::<CatalogServiceServer<grpc::CatalogGrpc>>(),
                    service_name::<CatalogAdminServiceServer<grpc::CatalogAdminGrpc>>(),
                    service_name::<CatalogInternalServiceServer<grpc::CatalogInternalGrpc>>(),
                ],
                shutdown,
            )
            .await?;
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
