//! The payment service. It owns payment attempts, charges, refunds and PG subscription keys (SPEC section 1).
//!
//! Today it starts, migrates its own database and serves gRPC health, reflection and metrics;
//! its contract and RPCs arrive with the payments issue.
#![forbid(unsafe_code)]

pub mod config;
pub mod store;

use std::net::SocketAddr;

use pillivery_platform::server::{ServeError, ServiceHost};
use pillivery_platform::shutdown::Shutdown;

pub use crate::config::PaymentConfig;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// The service with its ports bound, not yet serving.
pub struct BoundPayment {
    config: PaymentConfig,
    host: ServiceHost,
}

impl BoundPayment {
    pub async fn bind(config: PaymentConfig) -> Result<BoundPayment, StartError> {
        let host = ServiceHost::bind("payment", &config.server).await?;
        Ok(BoundPayment { config, host })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// Migrates, then serves until `shutdown`.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), StartError> {
        let _database = pillivery_platform::db::connect_and_migrate::<store::migration::Migrator>(
            &self.config.database,
        )
        .await?;
        self.host
            .serve(tonic::service::Routes::default(), &[], shutdown)
            .await?;
        Ok(())
    }
}

/// Binds and serves until `shutdown`.
pub async fn run(config: PaymentConfig, shutdown: Shutdown) -> Result<(), StartError> {
    BoundPayment::bind(config).await?.serve(shutdown).await
}
