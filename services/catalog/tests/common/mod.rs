//! What the catalog's black-box gRPC tests share: the service on a free loopback port with a
//! fresh database, tokens from a key generated per test (its JWKS is the catalog's `jwks`, as the
//! fleet wires it), and helpers for requests and errors.
#![allow(dead_code)]

use catalog::{BoundCatalog, CatalogConfig};
use pillivery_platform::auth::{Role, SigningKey, TokenConfig, TokenIssuer, jwks};
use pillivery_platform::error::{ApiError, DecodedError};
use pillivery_platform::server::ServerConfig;
use pillivery_platform::shutdown::Shutdown;
use pillivery_testkit::{Backend, TestDatabase};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// A running catalog and what tests need to call it.
pub struct RunningCatalog {
    pub channel: Channel,
    /// Signs tokens the catalog accepts.
    pub issuer: TokenIssuer,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<Result<(), catalog::StartError>>,
    database: TestDatabase,
}

impl RunningCatalog {
    pub async fn start(backend: &Backend) -> RunningCatalog {
        let database = TestDatabase::fresh(backend).await;
        let key = SigningKey::generate();
        let config = CatalogConfig {
            server: ServerConfig::loopback(),
            database: database.config.clone(),
            jwks: jwks(&[key.verification_key()]).to_string(),
            ..CatalogConfig::default()
        };
        let bound = BoundCatalog::bind(config).await.unwrap();
        let url = format!("http://{}", bound.grpc_addr());
        let shutdown = Shutdown::new();
        let server = tokio::spawn(bound.serve(shutdown.clone()));
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        RunningCatalog {
            channel,
            issuer: TokenIssuer::new(key, TokenConfig::default()),
            shutdown,
            server,
            database,
        }
    }

    pub fn token(&self, user_id: i64, role: Role) -> String {
        self.issuer.issue(user_id, role, chrono::Utc::now()).token
    }

    /// Stops the service and drops the test's database.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.server.await.unwrap().unwrap();
        self.database.remove().await;
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
