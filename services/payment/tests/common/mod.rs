//! What the payment service's black-box tests share: the service on a free loopback port with a
//! fresh database, the real sandbox PG (`crates/sandbox-pg`) in-process, a fake order service
//! speaking `OrderInternalService`, tokens from a key generated per test, an in-process event
//! bus the service consumes from, and helpers for the buyer's trip through the sandbox's page.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use payment::provider::{
    Approval, ApproveRequest, CancelRequest, Cancellation, Contract, Lookup, PaymentProvider,
    ProviderError, Ready, ReadyRequest, SubscriptionChargeRequest,
};
use payment::{BoundPayment, PaymentConfig};
use pillivery_platform::auth::{Role, SigningKey, TokenConfig, TokenIssuer, jwks};
use pillivery_platform::client::UpstreamConfig;
use pillivery_platform::error::{ApiError, DecodedError};
use pillivery_platform::events::{EventBus, EventEnvelope, EventsConfig};
use pillivery_platform::resilience::EdgePolicy;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_proto::order as order_pb;
use pillivery_proto::order::order_internal_service_server::{
    OrderInternalService, OrderInternalServiceServer,
};
use pillivery_proto::payment as pb;
use pillivery_proto::payment::payment_internal_service_client::PaymentInternalServiceClient;
use pillivery_proto::payment::payment_service_client::PaymentServiceClient;
use pillivery_sandbox_pg::{DEFAULT_SECRET_KEY, FaultConfig, LedgerFilter, Sandbox, SandboxConfig};
pub use pillivery_testkit::Backend;
use pillivery_testkit::TestDatabase;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// What the fake order service knows of one order.
#[derive(Clone, Debug)]
pub struct FakeOrder {
    pub user_id: i64,
    pub status: order_pb::OrderStatus,
    pub total_price: i64,
    pub total_quantity: i64,
    pub item_name: String,
    pub has_subscription_lines: bool,
    /// The tid MarkOrderPaid was called with.
    pub paid_with: Option<String>,
}

/// `OrderInternalService` with just enough behaviour for the payment flows: ownership and
/// amounts for payment, REQUEST → PAID idempotent per payment id, REFUND_PENDING → REFUNDED.
#[derive(Clone, Default)]
pub struct FakeOrders {
    pub orders: Arc<Mutex<HashMap<i64, FakeOrder>>>,
    /// While set, MarkOrderPaid / MarkOrderRefunded answer UNAVAILABLE (an outage).
    pub down: Arc<AtomicBool>,
    pub mark_paid_calls: Arc<AtomicUsize>,
}

impl FakeOrders {
    pub fn add(&self, order_id: i64, user_id: i64, total: i64, subscription: bool) {
        self.orders.lock().unwrap().insert(
            order_id,
            FakeOrder {
                user_id,
                status: order_pb::OrderStatus::Request,
                total_price: total,
                total_quantity: 2,
                item_name: format!("비타민C 외 1건 ({order_id})"),
                has_subscription_lines: subscription,
                paid_with: None,
            },
        );
    }

    pub fn order(&self, order_id: i64) -> FakeOrder {
        self.orders.lock().unwrap()[&order_id].clone()
    }

    pub fn set_status(&self, order_id: i64, status: order_pb::OrderStatus) {
        self.orders
            .lock()
            .unwrap()
            .get_mut(&order_id)
            .unwrap()
            .status = status;
    }

    fn answer(order_id: i64, order: &FakeOrder) -> order_pb::Order {
        order_pb::Order {
            order_id,
            status: order.status as i32,
            total_price: order.total_price,
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl OrderInternalService for FakeOrders {
    async fn get_order_for_payment(
        &self,
        request: Request<order_pb::GetOrderForPaymentRequest>,
    ) -> Result<Response<order_pb::OrderForPayment>, Status> {
        let order_id = request.into_inner().order_id;
        let orders = self.orders.lock().unwrap();
        let order = orders
            .get(&order_id)
            .ok_or_else(|| Status::not_found("no such order"))?;
        Ok(Response::new(order_pb::OrderForPayment {
            order_id,
            user_id: order.user_id,
            status: order.status as i32,
            total_price: order.total_price,
            total_quantity: order.total_quantity,
            item_name: order.item_name.clone(),
            has_subscription_lines: order.has_subscription_lines,
        }))
    }

    async fn mark_order_paid(
        &self,
        request: Request<order_pb::MarkOrderPaidRequest>,
    ) -> Result<Response<order_pb::Order>, Status> {
        self.mark_paid_calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("order service down (test)"));
        }
        let request = request.into_inner();
        let mut orders = self.orders.lock().unwrap();
        let order = orders
            .get_mut(&request.order_id)
            .ok_or_else(|| Status::not_found("no such order"))?;
        match order.status {
            order_pb::OrderStatus::Request if request.amount == order.total_price => {
                order.status = order_pb::OrderStatus::Paid;
                order.paid_with = Some(request.payment_id);
            }
            order_pb::OrderStatus::Paid
                if order.paid_with.as_deref() == Some(request.payment_id.as_str()) => {}
            _ => return Err(Status::failed_precondition("INVALID_ORDER_STATE")),
        }
        Ok(Response::new(Self::answer(request.order_id, order)))
    }

    async fn mark_order_refunded(
        &self,
        request: Request<order_pb::MarkOrderRefundedRequest>,
    ) -> Result<Response<order_pb::Order>, Status> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("order service down (test)"));
        }
        let order_id = request.into_inner().order_id;
        let mut orders = self.orders.lock().unwrap();
        let order = orders
            .get_mut(&order_id)
            .ok_or_else(|| Status::not_found("no such order"))?;
        match order.status {
            order_pb::OrderStatus::RefundPending => order.status = order_pb::OrderStatus::Refunded,
            order_pb::OrderStatus::Refunded => {}
            _ => return Err(Status::failed_precondition("INVALID_ORDER_STATE")),
        }
        Ok(Response::new(Self::answer(order_id, order)))
    }

    async fn get_subscription_for_billing(
        &self,
        _request: Request<order_pb::GetSubscriptionForBillingRequest>,
    ) -> Result<Response<order_pb::Subscription>, Status> {
        Err(Status::unimplemented("not used by the payment service"))
    }

    async fn record_renewal(
        &self,
        _request: Request<order_pb::RecordRenewalRequest>,
    ) -> Result<Response<order_pb::RecordRenewalResponse>, Status> {
        Err(Status::unimplemented("not used by the payment service"))
    }

    async fn record_renewal_failure(
        &self,
        _request: Request<order_pb::RecordRenewalFailureRequest>,
    ) -> Result<Response<order_pb::Subscription>, Status> {
        Err(Status::unimplemented("not used by the payment service"))
    }

    async fn check_purchase(
        &self,
        _request: Request<order_pb::CheckPurchaseRequest>,
    ) -> Result<Response<order_pb::CheckPurchaseResponse>, Status> {
        Err(Status::unimplemented("not used by the payment service"))
    }
}

/// A PG wrapper for tests: counts subscription charges reaching the provider, and can make
/// approvals report another amount (what a tampered or buggy PG answer looks like).
pub struct Instrumented {
    pub inner: Arc<dyn PaymentProvider>,
    pub charge_calls: AtomicUsize,
    pub approve_amount_delta: std::sync::atomic::AtomicI64,
    /// The slowest charge the provider refused without sending (breaker open), in µs.
    pub slowest_not_sent_micros: std::sync::atomic::AtomicU64,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn PaymentProvider>) -> Self {
        Self {
            inner,
            charge_calls: AtomicUsize::new(0),
            approve_amount_delta: std::sync::atomic::AtomicI64::new(0),
            slowest_not_sent_micros: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl PaymentProvider for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn ready(&self, request: &ReadyRequest) -> Result<Ready, ProviderError> {
        self.inner.ready(request).await
    }

    async fn approve(&self, request: &ApproveRequest) -> Result<Approval, ProviderError> {
        let mut approval = self.inner.approve(request).await?;
        approval.amount += self.approve_amount_delta.load(Ordering::SeqCst);
        Ok(approval)
    }

    async fn charge_subscription(
        &self,
        request: &SubscriptionChargeRequest,
    ) -> Result<Approval, ProviderError> {
        self.charge_calls.fetch_add(1, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let answer = self.inner.charge_subscription(request).await;
        if let Err(ProviderError::NotSent(_)) = &answer {
            self.slowest_not_sent_micros
                .fetch_max(started.elapsed().as_micros() as u64, Ordering::SeqCst);
        }
        answer
    }

    async fn cancel(&self, request: &CancelRequest) -> Result<Cancellation, ProviderError> {
        self.inner.cancel(request).await
    }

    async fn inactivate_subscription(&self, sid: &str) -> Result<(), ProviderError> {
        self.inner.inactivate_subscription(sid).await
    }

    async fn lookup(&self, contract: Contract, tid: &str) -> Result<Lookup, ProviderError> {
        self.inner.lookup(contract, tid).await
    }
}

/// How a test wants the world set up.
#[derive(Clone)]
pub struct Setup {
    pub faults: FaultConfig,
    pub edge: EdgePolicy,
    pub database_connections: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            faults: FaultConfig::default(),
            edge: EdgePolicy {
                max_concurrent: 256,
                default_deadline_ms: 5_000,
                ..EdgePolicy::default()
            },
            database_connections: 8,
        }
    }
}

/// The payment service, the sandbox and the fake order service, running.
pub struct Harness {
    pub channel: Channel,
    pub issuer: TokenIssuer,
    pub sandbox: Sandbox,
    pub orders: FakeOrders,
    pub provider: Arc<Instrumented>,
    pub admin_addr: SocketAddr,
    pub http: reqwest::Client,
    /// The bus the service's consumer reads (stream `order`): tests publish the order
    /// service's events on it.
    pub bus: EventBus,
    /// The service's configuration as started (to build a second instance of its flows).
    pub config: PaymentConfig,
    shutdown: Shutdown,
    /// Tasks of what tests build besides the service (upstream clients of extra flows).
    tasks: Tasks,
    server: tokio::task::JoinHandle<Result<(), payment::StartError>>,
    database: TestDatabase,
}

pub const PUBLIC_BASE_URL: &str = "http://shop.test";
pub const SUCCESS_URL: &str = "http://store.test/paid";
pub const CANCEL_URL: &str = "http://store.test/canceled";
pub const FAIL_URL: &str = "http://store.test/failed";

impl Harness {
    pub async fn start(backend: &Backend) -> Harness {
        Self::start_with(backend, Setup::default()).await
    }

    pub async fn start_with(backend: &Backend, setup: Setup) -> Harness {
        let shutdown = Shutdown::new();
        // The PG.
        let sandbox_config = SandboxConfig {
            faults: setup.faults.clone(),
            ..SandboxConfig::loopback()
        };
        let bound_sandbox = Sandbox::bind(sandbox_config).await.unwrap();
        let sandbox = bound_sandbox.sandbox();
        let pg_url = bound_sandbox.base_url().to_owned();
        tokio::spawn(bound_sandbox.serve(shutdown.clone()));
        // The order service.
        let orders = FakeOrders::default();
        let order_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let order_addr = order_listener.local_addr().unwrap();
        {
            let orders = orders.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(OrderInternalServiceServer::new(orders))
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(order_listener),
                        stop.wait(),
                    )
                    .await
            });
        }
        // The payment service.
        let mut database = TestDatabase::fresh(backend).await;
        database.config.max_connections = setup.database_connections;
        let key = SigningKey::generate();
        let mut config = PaymentConfig {
            server: ServerConfig::loopback(),
            database: database.config.clone(),
            public_base_url: PUBLIC_BASE_URL.into(),
            order: UpstreamConfig::new(format!("http://{order_addr}")),
            jwks: jwks(&[key.verification_key()]).to_string(),
            reconcile_interval_ms: 50,
            lease_ms: setup.edge.default_deadline_ms + 2_000,
            ..PaymentConfig::default()
        };
        config.provider.base_url = pg_url;
        config.provider.secret_key = DEFAULT_SECRET_KEY.into();
        config.provider.edge = setup.edge.clone();
        config.storefront.success_url = SUCCESS_URL.into();
        config.storefront.cancel_url = CANCEL_URL.into();
        config.storefront.fail_url = FAIL_URL.into();
        config.events = test_events_config();
        let bus = EventBus::in_memory(&config.events);
        let _ = pillivery_platform::telemetry::metrics_handle();
        let kakaopay = payment::provider::kakaopay::KakaoPay::new(&config.provider).unwrap();
        let provider = Arc::new(Instrumented::new(Arc::new(kakaopay)));
        let bound = BoundPayment::bind_with_provider(config.clone(), provider.clone())
            .await
            .unwrap()
            .with_event_bus(bus.clone());
        let admin_addr = bound.admin_addr();
        let url = format!("http://{}", bound.grpc_addr());
        let server = tokio::spawn(bound.serve(shutdown.clone()));
        let grpc_addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
        pillivery_platform::server::wait_until_serving(
            grpc_addr,
            pillivery_platform::server::READINESS,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        Harness {
            channel,
            issuer: TokenIssuer::new(key, TokenConfig::default()),
            sandbox,
            orders,
            provider,
            admin_addr,
            http: pillivery_testkit::http_client(),
            bus,
            config,
            shutdown,
            tasks: Tasks::new(),
            server,
            database,
        }
    }

    /// A second instance of the service's flows and its event handler over the same database,
    /// PG and order service, with a connection for inbox scopes: what a second replica would
    /// run, and how tests call the handler directly with fabricated events.
    pub async fn event_handler(
        &self,
    ) -> (payment::events::PaymentEvents, sea_orm::DatabaseConnection) {
        let database = self.database.connect().await;
        let upstream = pillivery_platform::client::Upstream::new(
            "order",
            &self.config.order,
            &self.tasks,
            &self.shutdown,
        )
        .unwrap();
        let payments = payment::payments::Payments::new(
            payment::store::PaymentStore::new(database.clone()),
            self.provider.clone(),
            payment::clients::OrderClient::new(upstream),
            payment::payments::FlowSettings::from_config(&self.config),
        );
        (
            payment::events::PaymentEvents::new(Arc::new(payments)),
            database,
        )
    }

    /// Publishes `event` on stream `order`, as the order service's relay would.
    pub async fn publish(&self, event: &EventEnvelope) {
        self.bus
            .backend()
            .publish(payment::events::ORDER_STREAM, std::slice::from_ref(event))
            .await
            .unwrap();
    }

    /// The payment consumer's dead letters waiting for a replay, from the admin port.
    pub async fn dead_letters(&self) -> Vec<serde_json::Value> {
        let answer: serde_json::Value = self
            .http
            .get(format!(
                "http://{}/admin/events/dead-letters?consumer=payment",
                self.admin_addr
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["deadLetters"].as_array().unwrap().clone()
    }

    pub fn client(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(self.channel.clone())
    }

    pub fn internal(&self) -> PaymentInternalServiceClient<Channel> {
        PaymentInternalServiceClient::new(self.channel.clone())
    }

    pub fn token(&self, user_id: i64) -> String {
        self.issuer
            .issue(user_id, Role::User, chrono::Utc::now())
            .token
    }

    /// ReadyPayment as `user_id` with an Idempotency-Key.
    pub async fn ready(
        &self,
        user_id: i64,
        order_id: i64,
        key: &str,
    ) -> Result<pb::ReadyPaymentResponse, Status> {
        let mut request = authorized(pb::ReadyPaymentRequest { order_id }, &self.token(user_id));
        request
            .metadata_mut()
            .insert("idempotency-key", key.parse().unwrap());
        self.client()
            .ready_payment(request)
            .await
            .map(Response::into_inner)
    }

    /// The buyer on the sandbox's page: `auto=approve|cancel|fail`; answers the Location the
    /// page redirects to (our approve / cancel / fail URL).
    pub async fn buyer(&self, ready: &pb::ReadyPaymentResponse, choice: &str) -> String {
        let separator = if ready.next_redirect_pc_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{separator}auto={choice}", ready.next_redirect_pc_url);
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::FOUND);
        response.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The pg_token of an approval URL.
    pub fn pg_token(location: &str) -> String {
        let query = location.split_once('?').unwrap().1;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("pg_token="))
            .unwrap()
            .to_owned()
    }

    pub async fn approve(
        &self,
        order_id: i64,
        pg_token: &str,
    ) -> Result<pb::PaymentRedirect, Status> {
        self.client()
            .approve_payment(pb::ApprovePaymentRequest {
                order_id,
                pg_token: pg_token.to_owned(),
            })
            .await
            .map(Response::into_inner)
    }

    /// Ready, buyer approves, approve: the order paid. Answers the approve's redirect.
    pub async fn pay(&self, user_id: i64, order_id: i64) -> pb::PaymentRedirect {
        let ready = self
            .ready(user_id, order_id, &format!("pay-{order_id}"))
            .await
            .unwrap();
        let location = self.buyer(&ready, "approve").await;
        self.approve(order_id, &Self::pg_token(&location))
            .await
            .unwrap()
    }

    pub async fn charge(
        &self,
        subscription_id: i64,
        cycle: i32,
        origin_order_id: i64,
        user_id: i64,
        amount: i64,
        attempt: i32,
    ) -> Result<pb::ChargeSubscriptionResponse, Status> {
        let request = pb::ChargeSubscriptionRequest {
            subscription_id,
            cycle,
            amount,
            user_id,
            origin_order_id,
            item_name: "비타민C 정기배송".into(),
            quantity: 1,
            attempt,
        };
        let mut request = Request::new(request);
        request.set_timeout(Duration::from_secs(20));
        self.internal()
            .charge_subscription(request)
            .await
            .map(Response::into_inner)
    }

    /// The sandbox's ledger entries of one partner order id.
    pub fn ledger_of(&self, partner_order_id: &str) -> pillivery_sandbox_pg::Ledger {
        self.sandbox.ledger(&LedgerFilter {
            partner_order_id: Some(partner_order_id.to_owned()),
            ..LedgerFilter::default()
        })
    }

    /// The payment service's `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.admin_addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops everything and drops the test's database.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.server.await.unwrap().unwrap();
        self.tasks.close();
        self.tasks.wait().await;
        self.database.remove().await;
    }
}

/// Short consumer backoffs and few attempts, so that a failing event reaches the dead letters
/// within a test's patience.
pub fn test_events_config() -> EventsConfig {
    EventsConfig {
        consumer_block_ms: 100,
        max_attempts: 3,
        backoff_base_ms: 10,
        backoff_max_ms: 50,
        ..EventsConfig::default()
    }
}

/// An event of the order service as its outbox would write it.
pub fn order_event(event_type: &str, aggregate_id: i64, payload: Vec<u8>) -> EventEnvelope {
    EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: event_type.to_owned(),
        aggregate_id: aggregate_id.to_string(),
        occurred_at: chrono::Utc::now(),
        traceparent: None,
        payload,
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

#[allow(unused_macros)] // the breaker's binary runs on SQLite only
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
