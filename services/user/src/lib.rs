//! The user service. It owns users, credentials, OAuth identities and refresh-token families (SPEC section 1).
//!
//! Today it starts, migrates its own database and serves gRPC health, reflection and metrics;
//! its contract and RPCs arrive with the identity issue.
#![forbid(unsafe_code)]

pub mod config;
pub mod store;

use pillivery_platform::server::{MigratedService, StartError};
use pillivery_platform::shutdown::Shutdown;

pub use crate::config::UserConfig;

/// The service with its ports bound, not yet serving.
pub type BoundUser = MigratedService<store::migration::Migrator>;

/// Binds the service's ports (the database is migrated when it starts serving).
pub async fn bind(config: UserConfig) -> Result<BoundUser, StartError> {
    MigratedService::bind("user", &config.server, config.database).await
}

/// Binds and serves until `shutdown`.
pub async fn run(config: UserConfig, shutdown: Shutdown) -> Result<(), StartError> {
    bind(config).await?.serve(shutdown).await
}
