//! The payment service. It owns payment attempts, charges, refunds and PG subscription keys (SPEC section 1).
//!
//! Today it starts, migrates its own database and serves gRPC health, reflection and metrics;
//! its contract and RPCs arrive with the payments issue.
#![forbid(unsafe_code)]

pub mod config;
pub mod store;

use pillivery_platform::server::{MigratedService, StartError};
use pillivery_platform::shutdown::Shutdown;

pub use crate::config::PaymentConfig;

/// The service with its ports bound, not yet serving.
pub type BoundPayment = MigratedService<store::migration::Migrator>;

/// Binds the service's ports (the database is migrated when it starts serving).
pub async fn bind(config: PaymentConfig) -> Result<BoundPayment, StartError> {
    MigratedService::bind("payment", &config.server, config.database).await
}

/// Binds and serves until `shutdown`.
pub async fn run(config: PaymentConfig, shutdown: Shutdown) -> Result<(), StartError> {
    bind(config).await?.serve(shutdown).await
}
