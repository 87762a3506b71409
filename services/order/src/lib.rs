//! The order service. It owns carts, orders, order lines and subscriptions (SPEC section 1).
//!
//! Today it starts, migrates its own database and serves gRPC health, reflection and metrics;
//! its contract and RPCs arrive with the orders issue.
#![forbid(unsafe_code)]

pub mod config;
pub mod store;

use pillivery_platform::server::{MigratedService, StartError};
use pillivery_platform::shutdown::Shutdown;

pub use crate::config::OrderConfig;

/// The service with its ports bound, not yet serving.
pub type BoundOrder = MigratedService<store::migration::Migrator>;

/// Binds the service's ports (the database is migrated when it starts serving).
pub async fn bind(config: OrderConfig) -> Result<BoundOrder, StartError> {
    MigratedService::bind("order", &config.server, config.database).await
}

/// Binds and serves until `shutdown`.
pub async fn run(config: OrderConfig, shutdown: Shutdown) -> Result<(), StartError> {
    bind(config).await?.serve(shutdown).await
}
