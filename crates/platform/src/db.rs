//! Database connections by URL and migrations.
//!
//! One service, one database: `sqlite://path?mode=rwc`, `postgres://…` or `mysql://…`. The URL
//! decides the backend; the service's SeaORM code is the same for all three. Migrations are run
//! by the service before it reports ready.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;
use serde::{Deserialize, Serialize};

/// How to reach a service's database.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://./data/catalog.db?mode=rwc`, `postgres://user@host/db`, `mysql://root@host/db`.
    pub url: String,
    /// Largest number of pooled connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long to wait for a connection from the pool before failing the request.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// PostgreSQL only: the schema this service's tables live in (one per service or per test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout_ms() -> u64 {
    3_000
}

impl DatabaseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: default_max_connections(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
            schema: None,
        }
    }

    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), String> {
        let scheme = self.url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql" | "mysql") {
            return Err(format!(
                "database url must start with sqlite:, postgres: or mysql: (got `{scheme}:`)"
            ));
        }
        if self.max_connections == 0 {
            return Err("database max_connections must be at least 1".into());
        }
        if let Some(schema) = &self.schema
            && !is_plain_identifier(schema)
        {
            return Err(format!(
                "database schema `{schema}` must be letters, digits and underscores"
            ));
        }
        Ok(())
    }
}

fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Opens a pool. For PostgreSQL with a schema, the schema is created if needed and made the
/// search path of every pooled connection.
pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(config.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_millis(config.acquire_timeout_ms))
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        .sqlx_logging(false);
    if let Some(schema) = &config.schema {
        options.set_schema_search_path(schema.clone());
    }
    let db = sea_orm::Database::connect(options).await?;
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            // WAL lets readers run beside the single writer; the busy timeout turns short
            // write contention into waiting instead of an error.
            db.execute_unprepared(
                "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;",
            )
            .await?;
        }
        DbBackend::Postgres => {
            if let Some(schema) = &config.schema {
                db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .await?;
            }
        }
        _ => {}
    }
    Ok(db)
}

/// Connects and brings the schema up to date with migrator `M`.
pub async fn connect_and_migrate<M: MigratorTrait>(
    config: &DatabaseConfig,
) -> Result<DatabaseConnection, DbErr> {
    let db = connect(config).await?;
    M::up(&db, None).await?;
    Ok(db)
}

/// `mysql://user@host:3306/test?opts` with its database replaced by `database`.
pub fn with_database_name(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |index| index + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |slash| scheme_end + slash);
    let mut replaced = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        replaced.push('?');
        replaced.push_str(query);
    }
    replaced
}

/// Creates a MySQL/MariaDB database (utf8mb4) on the server `url` points at, if it is missing,
/// and returns the URL of that database.
pub async fn create_mysql_database(url: &str, database: &str) -> Result<String, DbErr> {
    if !is_plain_identifier(database) {
        return Err(DbErr::Custom(format!("bad database name `{database}`")));
    }
    let server = connect(&DatabaseConfig::new(url)).await?;
    server
        .execute_unprepared(&format!(
            "CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .await?;
    let _ = server.close().await;
    Ok(with_database_name(url, database))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_urls_get_another_database() {
        assert_eq!(
            with_database_name("mysql://root@127.0.0.1:3306/test", "pillivery_catalog"),
            "mysql://root@127.0.0.1:3306/pillivery_catalog"
        );
        assert_eq!(
            with_database_name("mysql://root@db", "x"),
            "mysql://root@db/x"
        );
        assert_eq!(
            with_database_name("mysql://u:p@db/test?ssl-mode=disabled", "x"),
            "mysql://u:p@db/x?ssl-mode=disabled"
        );
    }

    #[test]
    fn configs_are_checked_before_connecting() {
        assert!(DatabaseConfig::new("sqlite://x.db").validate().is_ok());
        assert!(DatabaseConfig::new("redis://x").validate().is_err());
        let mut config = DatabaseConfig::new("postgres://x/db");
        config.schema = Some("bad-name".into());
        assert!(config.validate().is_err());
    }
}
