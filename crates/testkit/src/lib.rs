//! What Pillivery's tests share.
//!
//! - [`Backend`] and [`TestDatabase`]: a fresh database for one test on SQLite (always), and on
//!   PostgreSQL / MySQL when `PILLIVERY_TEST_POSTGRES_URL` / `PILLIVERY_TEST_MYSQL_URL` name a
//!   server. Each test gets its own PostgreSQL schema or MySQL database, so tests run in
//!   parallel. A named server that cannot be reached fails the test: it is never skipped.
//! - [`redis_url`]: the Redis server named by `PILLIVERY_TEST_REDIS_URL`, if any.
//! - [`eventually`]: poll with a deadline instead of sleeping.
//! - [`http_client`]: a plain HTTP client for black-box tests through the gateway.
//! - [`oauth::FakeOAuthProvider`]: an OAuth2 provider's token and user-info endpoints.
#![forbid(unsafe_code)]

pub mod oauth;

use std::future::Future;
use std::time::Duration;

use pillivery_platform::db::DatabaseConfig;
pub use reqwest;

pub const POSTGRES_URL_VARIABLE: &str = "PILLIVERY_TEST_POSTGRES_URL";
pub const MYSQL_URL_VARIABLE: &str = "PILLIVERY_TEST_MYSQL_URL";
pub const REDIS_URL_VARIABLE: &str = "PILLIVERY_TEST_REDIS_URL";

/// A database engine a test can run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres(String),
    Mysql(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
            Backend::Mysql(_) => "mysql",
        }
    }
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

impl Backend {
    /// The PostgreSQL server named by `PILLIVERY_TEST_POSTGRES_URL`, if any.
    pub fn postgres() -> Option<Backend> {
        variable(POSTGRES_URL_VARIABLE).map(Backend::Postgres)
    }

    /// The MySQL/MariaDB server named by `PILLIVERY_TEST_MYSQL_URL`, if any.
    pub fn mysql() -> Option<Backend> {
        variable(MYSQL_URL_VARIABLE).map(Backend::Mysql)
    }
}

/// SQLite, plus every server the environment names.
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    backends.extend(Backend::postgres());
    backends.extend(Backend::mysql());
    backends
}

/// The Redis server tests must also run against, if one is named.
pub fn redis_url() -> Option<String> {
    variable(REDIS_URL_VARIABLE)
}

/// A Redis-backed key-value store under a fresh key prefix, when `PILLIVERY_TEST_REDIS_URL` names
/// a server (`None` otherwise); panics when the named server cannot be used.
pub async fn redis_store() -> Option<pillivery_platform::kv::KeyValueStore> {
    let url = redis_url()?;
    let store =
        pillivery_platform::kv::KeyValueStore::connect_redis(&url, "", Duration::from_secs(2))
            .await
            .unwrap_or_else(|error| {
                panic!("{REDIS_URL_VARIABLE}={url} is set but unusable: {error}")
            });
    Some(store.with_prefix(&format!("test-{}", uuid::Uuid::new_v4().simple())))
}

/// A database that exists for one test; [`TestDatabase::remove`] drops it afterwards.
pub struct TestDatabase {
    pub backend: Backend,
    pub config: DatabaseConfig,
    /// The PostgreSQL schema or MySQL database made for this test.
    name: String,
    /// Keeps a SQLite file's folder alive for the test's duration.
    _folder: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// Creates an empty database (file, schema or database) for one test. Panics with a clear
    /// message when a named server cannot be reached.
    pub async fn fresh(backend: &Backend) -> TestDatabase {
        let unique = format!("t_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let folder = tempfile::tempdir().expect("a temporary folder");
                let path = folder.path().join("test.db");
                TestDatabase {
                    backend: backend.clone(),
                    config: DatabaseConfig::new(format!("sqlite://{}?mode=rwc", path.display())),
                    name: unique,
                    _folder: Some(folder),
                }
            }
            Backend::Postgres(url) => {
                let mut config = DatabaseConfig::new(url.clone());
                config.schema = Some(unique.clone());
                config.max_connections = 4;
                TestDatabase {
                    backend: backend.clone(),
                    config,
                    name: unique,
                    _folder: None,
                }
            }
            Backend::Mysql(url) => {
                let database_url = pillivery_platform::db::create_mysql_database(url, &unique)
                    .await
                    .unwrap_or_else(|error| {
                        panic!("{MYSQL_URL_VARIABLE}={url} is set but unusable: {error}")
                    });
                let mut config = DatabaseConfig::new(database_url);
                config.max_connections = 4;
                TestDatabase {
                    backend: backend.clone(),
                    config,
                    name: unique,
                    _folder: None,
                }
            }
        }
    }

    /// Connects (creating the PostgreSQL schema when needed); panics when the server is named
    /// but unreachable.
    pub async fn connect(&self) -> sea_orm::DatabaseConnection {
        pillivery_platform::db::connect(&self.config)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{} database {} is unreachable: {error}",
                    self.backend.name(),
                    self.config.url
                )
            })
    }
}

impl TestDatabase {
    /// Drops the test's schema (PostgreSQL) or database (MySQL); a SQLite file goes with its
    /// temporary folder. Call it after closing the test's own connections.
    pub async fn remove(self) {
        use sea_orm::ConnectionTrait;
        let (url, statement) = match &self.backend {
            Backend::Sqlite => return,
            Backend::Postgres(url) => (
                url,
                format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name),
            ),
            Backend::Mysql(url) => (url, format!("DROP DATABASE IF EXISTS `{}`", self.name)),
        };
        let server = pillivery_platform::db::connect(&DatabaseConfig::new(url.clone()))
            .await
            .unwrap_or_else(|error| panic!("reconnecting to drop {}: {error}", self.name));
        server
            .execute_unprepared(&statement)
            .await
            .unwrap_or_else(|error| panic!("dropping {}: {error}", self.name));
        let _ = server.close().await;
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP client for black-box tests: no proxy, no redirects followed, no automatic
/// decompression.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        // Redirects are part of what is tested (the OAuth authorize step answers 302).
        .redirect(reqwest::redirect::Policy::none())
        // Bodies arrive as sent: `cargo test --workspace` unifies reqwest's features with the
        // load tool's (gzip), and a decompressing client would hide `Content-Encoding`.
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}
