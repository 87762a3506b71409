//! The catalog's configuration.

use pillivery_platform::config::ServiceConfig;
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};

/// Most demo items a start may seed (the load tests use 40 000).
pub const MAX_DEMO_ITEMS: u32 = 1_000_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    /// When the catalog is empty at start, fill it with this many demo items (0: never).
    pub demo_items: u32,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::new("sqlite://./data/catalog.db?mode=rwc"),
            demo_items: 0,
        }
    }
}

impl ServiceConfig for CatalogConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.database.validate()?;
        if self.demo_items > MAX_DEMO_ITEMS {
            return Err(format!("demo_items must be at most {MAX_DEMO_ITEMS}"));
        }
        Ok(())
    }
}
