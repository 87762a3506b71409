//! Database connections by URL and migrations.
//!
//! One service, one database: `sqlite://path?mode=rwc`, `postgres://…` or `mysql://…`. The URL
//! decides the backend; the service's SeaORM code is the same for all three. Migrations are run
//! by the service before it reports ready.

use std::time::Duration;

use sea_orm::error::{ConnAcquireErr, RuntimeErr};
use sea_orm::sqlx;
use sea_orm::sqlx::error::DatabaseError;
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

/// True when the database could not be reached or did not answer in time: the pool had no
/// connection, the connection broke, or the server gave up on a timeout, overload or shutdown.
/// Such failures are worth a retry later (a service answers 503); anything else is a bug or
/// bad data (500).
pub fn is_unavailable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            true
        }
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            sqlx_error_is_unavailable(error)
        }
        _ => false,
    }
}

fn sqlx_error_is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => {
            if let Some(mysql) = database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return mysql_error_is_unavailable(mysql.number())
                    || mysql.code().is_some_and(|state| state.starts_with("08"));
            }
            if let Some(postgres) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                return postgres_state_is_unavailable(postgres.code());
            }
            if let Some(sqlite) = database.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                return sqlite
                    .code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .is_some_and(sqlite_code_is_unavailable);
            }
            false
        }
        _ => false,
    }
}

/// SQLSTATE classes and codes of PostgreSQL that mean "not now" rather than "wrong".
fn postgres_state_is_unavailable(state: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (too many connections, disk full).
    state.starts_with("08")
        || state.starts_with("53")
        || matches!(
            state,
            "57014" // query_canceled: statement_timeout
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now
                | "55P03" // lock_not_available: lock_timeout
        )
}

/// MySQL/MariaDB error numbers that mean "not now".
fn mysql_error_is_unavailable(number: u16) -> bool {
    matches!(
        number,
        1040 // too many connections
            | 1053 // server shutdown in progress
            | 1205 // lock wait timeout
            | 1927 // MariaDB: connection was killed
            | 1969 // MariaDB: max_statement_time exceeded
            | 2006 // server has gone away
            | 2013 // lost connection during query
            | 3024 // MySQL: max_execution_time exceeded
    )
}

/// SQLite primary result codes (the low byte of the extended code) that mean "not now".
fn sqlite_code_is_unavailable(extended: i32) -> bool {
    matches!(
        extended & 0xff,
        5 // SQLITE_BUSY: another writer held the lock past busy_timeout
            | 6 // SQLITE_LOCKED
            | 10 // SQLITE_IOERR
            | 14 // SQLITE_CANTOPEN
    )
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

    #[test]
    fn pool_and_connection_failures_are_unavailable() {
        use std::sync::Arc;
        let unavailable = [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            DbErr::Conn(RuntimeErr::Internal("refused".into())),
            DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::PoolTimedOut))),
            DbErr::Exec(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            )))),
        ];
        for error in unavailable {
            assert!(is_unavailable(&error), "{error}");
        }
        let others = [
            DbErr::RecordNotFound("items".into()),
            DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::RowNotFound))),
            DbErr::Type("bad".into()),
        ];
        for error in others {
            assert!(!is_unavailable(&error), "{error}");
        }
    }

    #[test]
    fn server_codes() {
        assert!(postgres_state_is_unavailable("08006"));
        assert!(postgres_state_is_unavailable("53300"));
        assert!(postgres_state_is_unavailable("57014"));
        assert!(!postgres_state_is_unavailable("23505"));
        assert!(!postgres_state_is_unavailable("42P01"));
        assert!(mysql_error_is_unavailable(2006));
        assert!(mysql_error_is_unavailable(1205));
        assert!(!mysql_error_is_unavailable(1062));
        assert!(sqlite_code_is_unavailable(5));
        assert!(sqlite_code_is_unavailable(517)); // SQLITE_BUSY_SNAPSHOT
        assert!(!sqlite_code_is_unavailable(19)); // SQLITE_CONSTRAINT
        assert!(!sqlite_code_is_unavailable(2067)); // SQLITE_CONSTRAINT_UNIQUE
    }
}
