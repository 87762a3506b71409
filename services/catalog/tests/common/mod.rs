//! What the catalog's black-box gRPC tests share: the service on a free loopback port with a
//! fresh database, tokens from a key generated per test (its JWKS is the catalog's `jwks`, as the
//! fleet wires it), and helpers for requests and errors.
#![allow(dead_code)]

use std::time::Duration;

use catalog::store::CatalogStore;
use catalog::{BoundCatalog, CatalogConfig};
use pillivery_platform::auth::{Role, SigningKey, TokenConfig, TokenIssuer, jwks};
use pillivery_platform::client::UpstreamConfig;
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::error::{ApiError, DecodedError};
use pillivery_platform::kv::KeyValueStore;
use pillivery_platform::server::{READINESS, ServerConfig, wait_until_serving};
use pillivery_platform::shutdown::Shutdown;
use pillivery_platform::time::SharedClock;
use pillivery_testkit::{Backend, TestDatabase};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// A running catalog and what tests need to call it.
pub struct RunningCatalog {
    pub channel: Channel,
    /// Signs tokens the catalog accepts.
    pub issuer: TokenIssuer,
    /// The key-value store it was given (cache level 2, view sketches).
    pub kv: KeyValueStore,
    key: SigningKey,
    database_config: DatabaseConfig,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<Result<(), catalog::StartError>>,
    /// `None` for a replica started on another instance's database: the owner removes it.
    database: Option<TestDatabase>,
}

/// How to start a catalog beyond the defaults.
pub struct Options {
    /// The store to share (with another replica, or a Redis); a fresh in-process one if `None`.
    pub kv: Option<KeyValueStore>,
    /// The clock views are dated by; the system clock if `None`.
    pub clock: Option<SharedClock>,
    /// Last changes to the configuration.
    pub configure: fn(&mut CatalogConfig),
    /// The order and user services reviews ask (fakes on loopback ports); none if `None`.
    pub order: Option<UpstreamConfig>,
    pub user: Option<UpstreamConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kv: None,
            clock: None,
            configure: |_| {},
            order: None,
            user: None,
        }
    }
}

impl RunningCatalog {
    pub async fn start(backend: &Backend) -> RunningCatalog {
        RunningCatalog::start_with(backend, Options::default()).await
    }

    /// A catalog on a fresh database of `backend`.
    pub async fn start_with(backend: &Backend, options: Options) -> RunningCatalog {
        let database = TestDatabase::fresh(backend).await;
        let config = database.config.clone();
        let mut running = RunningCatalog::launch(config, SigningKey::generate(), options).await;
        running.database = Some(database);
        running
    }

    /// Another replica on this one's database, with the same token keys.
    pub async fn replica(&self, options: Options) -> RunningCatalog {
        RunningCatalog::launch(self.database_config.clone(), self.key.clone(), options).await
    }

    async fn launch(
        database_config: DatabaseConfig,
        key: SigningKey,
        options: Options,
    ) -> RunningCatalog {
        let mut config = CatalogConfig {
            server: ServerConfig::loopback(),
            database: database_config.clone(),
            jwks: jwks(&[key.verification_key()]).to_string(),
            ..CatalogConfig::default()
        };
        if let Some(order) = options.order {
            config.order = order;
        }
        if let Some(user) = options.user {
            config.user = user;
        }
        (options.configure)(&mut config);
        let kv = options.kv.unwrap_or_else(KeyValueStore::in_memory);
        let mut bound = BoundCatalog::bind_with(config, kv.clone()).await.unwrap();
        if let Some(clock) = options.clock {
            bound = bound.with_clock(clock);
        }
        let grpc_addr = bound.grpc_addr();
        let url = format!("http://{grpc_addr}");
        let shutdown = Shutdown::new();
        let server = tokio::spawn(bound.serve(shutdown.clone()));
        // Serving (and so readiness) starts after the migrations, which tests that use the
        // database directly need to have run.
        wait_until_serving(grpc_addr, READINESS, Duration::from_secs(60))
            .await
            .unwrap();
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        RunningCatalog {
            channel,
            issuer: TokenIssuer::new(key.clone(), TokenConfig::default()),
            kv,
            key,
            database_config,
            shutdown,
            server,
            database: None,
        }
    }

    pub fn token(&self, user_id: i64, role: Role) -> String {
        self.issuer.issue(user_id, role, chrono::Utc::now()).token
    }

    /// A store on the catalog's database (already migrated by the service).
    pub async fn store(&self) -> CatalogStore {
        CatalogStore::new(
            pillivery_platform::db::connect(&self.database_config)
                .await
                .unwrap(),
        )
    }

    /// Stops the service and, unless it is a replica, drops the test's database.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.server.await.unwrap().unwrap();
        if let Some(database) = self.database {
            database.remove().await;
        }
    }
}

/// `message` with a bearer token.
pub fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn decoded(status: &Status) -> DecodedError {
    ApiError::from_status(status).unwrap_or_else(|| panic!("no error details: {status:?}"))
}

#[track_caller]
pub fn assert_error(status: Status, code: Code, reason: &str) -> DecodedError {
    let error = decoded(&status);
    assert_eq!(
        (error.code, error.reason.as_str()),
        (code, reason),
        "{status:?}"
    );
    error
}

/// The fields of a validation error, in order.
pub fn fields(error: &DecodedError) -> Vec<&str> {
    error
        .field_errors
        .iter()
        .map(|field| field.field.as_str())
        .collect()
}

/// One test per scenario and backend: SQLite always, PostgreSQL/MySQL when configured. Each
/// test file defines `run(Option<Backend>, scenario)`.
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(Some(super::Backend::Sqlite), super::$name).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(super::Backend::postgres(), super::$name).await
            })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(super::Backend::mysql(), super::$name).await
            })*
        }
    };
}
