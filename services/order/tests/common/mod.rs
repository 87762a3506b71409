//! What the order service's black-box gRPC tests share: the service on a free loopback port
//! with a fresh database and a manual clock, a fake catalog whose items and availability the
//! test controls, tokens from a key generated per test, and helpers for errors and events.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use order::{BoundOrder, OrderConfig};
use pillivery_platform::auth::{Role, SigningKey, TokenConfig, TokenIssuer, jwks};
use pillivery_platform::client::UpstreamConfig;
use pillivery_platform::error::{ApiError, DecodedError};
use pillivery_platform::events::{EventBus, EventsConfig};
use pillivery_platform::server::ServerConfig;
use pillivery_platform::shutdown::Shutdown;
use pillivery_platform::time::ManualClock;
use pillivery_proto::catalog as catalog_pb;
use pillivery_proto::order as pb;
use pillivery_testkit::{Backend, TestDatabase};
use sea_orm::{ConnectionTrait, Statement};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub use pb::cart_service_client::CartServiceClient;
pub use pb::order_internal_service_client::OrderInternalServiceClient;
pub use pb::order_service_client::OrderServiceClient;
pub use pb::subscription_service_client::SubscriptionServiceClient;

/// The catalog as the order service sees it: `BatchGetItems` over the items the test put in.
#[derive(Clone, Default)]
pub struct FakeCatalog {
    items: Arc<Mutex<HashMap<i64, catalog_pb::Item>>>,
}

impl FakeCatalog {
    /// Puts (or replaces) an item with an origin price and a discount.
    pub fn put(&self, item_id: i64, name: &str, origin: i64, discount: i64) {
        let item = catalog_pb::Item {
            item_id,
            product_name: name.to_owned(),
            thumbnail: format!("https://img/{item_id}.png"),
            origin_price: origin,
            discount_price: discount,
            real_price: origin - discount,
            ..Default::default()
        };
        self.items.lock().unwrap().insert(item_id, item);
    }

    /// The item is deleted from the catalog.
    pub fn remove(&self, item_id: i64) {
        self.items.lock().unwrap().remove(&item_id);
    }
}

#[tonic::async_trait]
impl catalog_pb::catalog_internal_service_server::CatalogInternalService for FakeCatalog {
    async fn batch_get_items(
        &self,
        request: Request<catalog_pb::BatchGetItemsRequest>,
    ) -> Result<tonic::Response<catalog_pb::BatchGetItemsResponse>, Status> {
        let items = self.items.lock().unwrap();
        let found = request
            .into_inner()
            .item_ids
            .iter()
            .filter_map(|item_id| items.get(item_id).cloned())
            .collect();
        Ok(tonic::Response::new(catalog_pb::BatchGetItemsResponse {
            items: found,
        }))
    }

    async fn record_sales(
        &self,
        _request: Request<catalog_pb::RecordSalesRequest>,
    ) -> Result<tonic::Response<catalog_pb::RecordSalesResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

/// A running fake catalog; [`stop`](RunningCatalog::stop) makes it unreachable.
pub struct RunningCatalog {
    pub catalog: FakeCatalog,
    pub addr: SocketAddr,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<()>,
}

impl RunningCatalog {
    pub async fn start() -> RunningCatalog {
        let catalog = FakeCatalog::default();
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let service =
            catalog_pb::catalog_internal_service_server::CatalogInternalServiceServer::new(
                catalog.clone(),
            );
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.wait())
                .await
                .unwrap();
        });
        RunningCatalog {
            catalog,
            addr,
            shutdown,
            server,
        }
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.server.await;
    }
}

/// A running order service and what tests need to call it.
pub struct RunningOrder {
    pub channel: Channel,
    pub clock: ManualClock,
    pub catalog: FakeCatalog,
    /// The in-process bus the service's relay publishes to.
    pub bus: EventBus,
    catalog_server: Option<RunningCatalog>,
    issuer: TokenIssuer,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<Result<(), order::StartError>>,
    pub database: TestDatabase,
    pub db: sea_orm::DatabaseConnection,
}

/// The instant every test's clock starts at.
pub fn start_instant() -> DateTime<Utc> {
    "2026-11-24T02:00:00Z".parse().unwrap()
}

impl RunningOrder {
    pub async fn start(backend: &Backend) -> RunningOrder {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(
        backend: &Backend,
        adjust: impl FnOnce(&mut OrderConfig),
    ) -> RunningOrder {
        let database = TestDatabase::fresh(backend).await;
        let catalog_server = RunningCatalog::start().await;
        let key = SigningKey::generate();
        let mut catalog = UpstreamConfig::new(format!("http://{}", catalog_server.addr));
        catalog.policy.default_deadline_ms = 2_000;
        catalog.policy.connect_timeout_ms = 500;
        let mut config = OrderConfig {
            server: ServerConfig::loopback(),
            database: database.config.clone(),
            jwks: jwks(&[key.verification_key()]).to_string(),
            catalog,
            events: EventsConfig {
                relay_poll_interval_ms: 50,
                consumer_block_ms: 50,
                ..EventsConfig::default()
            },
            ..OrderConfig::default()
        };
        adjust(&mut config);
        let clock = ManualClock::starting_at(start_instant());
        let bus = EventBus::in_memory(&config.events);
        let bound = BoundOrder::bind(config)
            .await
            .unwrap()
            .with_clock(Arc::new(clock.clone()))
            .with_event_bus(bus.clone());
        let url = format!("http://{}", bound.grpc_addr());
        let grpc_addr = bound.grpc_addr();
        let shutdown = Shutdown::new();
        let server = tokio::spawn(bound.serve(shutdown.clone()));
        pillivery_platform::server::wait_until_serving(
            grpc_addr,
            pillivery_platform::server::READINESS,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        let db = database.connect().await;
        RunningOrder {
            channel,
            clock,
            catalog: catalog_server.catalog.clone(),
            bus,
            catalog_server: Some(catalog_server),
            issuer: TokenIssuer::new(key, TokenConfig::default()),
            shutdown,
            server,
            database,
            db,
        }
    }

    pub fn token(&self, user_id: i64) -> String {
        self.issuer.issue(user_id, Role::User, Utc::now()).token
    }

    pub fn carts(&self) -> CartServiceClient<Channel> {
        CartServiceClient::new(self.channel.clone())
    }

    pub fn orders(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.channel.clone())
    }

    pub fn subscriptions(&self) -> SubscriptionServiceClient<Channel> {
        SubscriptionServiceClient::new(self.channel.clone())
    }

    pub fn internal(&self) -> OrderInternalServiceClient<Channel> {
        OrderInternalServiceClient::new(self.channel.clone())
    }

    /// Makes the catalog unreachable.
    pub async fn stop_catalog(&mut self) {
        if let Some(server) = self.catalog_server.take() {
            server.stop().await;
        }
    }

    /// The outbox as written: (type, aggregate id, payload), oldest first.
    pub async fn outbox(&self) -> Vec<(String, String, Vec<u8>)> {
        let backend = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT event_type, aggregate_id, payload FROM outbox_events ORDER BY id",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                (
                    row.try_get("", "event_type").unwrap(),
                    row.try_get("", "aggregate_id").unwrap(),
                    row.try_get("", "payload").unwrap(),
                )
            })
            .collect()
    }

    /// The types of the outbox events about order `order_id`, oldest first.
    pub async fn events_of(&self, order_id: i64) -> Vec<String> {
        self.outbox()
            .await
            .into_iter()
            .filter(|(event_type, aggregate, _)| {
                event_type.starts_with("Order") && *aggregate == order_id.to_string()
            })
            .map(|(event_type, _, _)| event_type)
            .collect()
    }

    /// Stops the service and drops the test's database.
    pub async fn stop(mut self) {
        self.stop_catalog().await;
        self.shutdown.trigger();
        self.server.await.unwrap().unwrap();
        let _ = self.db.close().await;
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

/// `message` with a bearer token and an idempotency key.
pub fn keyed<T>(message: T, token: &str, key: &str) -> Request<T> {
    let mut request = authorized(message, token);
    request
        .metadata_mut()
        .insert("idempotency-key", key.parse().unwrap());
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

pub fn receiver() -> pb::Receiver {
    pb::Receiver {
        name: "김수령".into(),
        phone: "01012345678".into(),
        city: "서울".into(),
        detail_address: "강남구 테헤란로 1".into(),
    }
}

pub fn line(item_id: i64, quantity: i32, period_days: Option<i32>) -> pb::OrderLineInput {
    pb::OrderLineInput {
        item_id,
        quantity,
        period_days,
    }
}

pub fn order_request(lines: Vec<pb::OrderLineInput>, from_cart: bool) -> pb::CreateOrderRequest {
    pb::CreateOrderRequest {
        lines,
        from_cart,
        receiver: Some(receiver()),
    }
}

pub fn timestamp(instant: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_nanos() as i32,
    }
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
