//! What the scheduler's tests share: the scheduler on a free loopback port with a fresh
//! database, and the outside world it bills through — small in-test gRPC servers implementing
//! `OrderInternalService` and `PaymentInternalService` with the contracts' exactly-once rules
//! (the real order and payment services were still being built when these tests were
//! written; the fleet test in `crates/pillivery/tests/billing.rs` is where they meet).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use pillivery_platform::auth::{Role, SigningKey, TokenConfig, TokenIssuer, jwks};
use pillivery_platform::client::{Upstream, UpstreamConfig};
use pillivery_platform::error::{ApiError, DecodedError};
use pillivery_platform::server::ServerConfig;
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_platform::time::{ManualClock, SharedClock};
use pillivery_proto::order as order_pb;
use pillivery_proto::payment as payment_pb;
use pillivery_testkit::TestDatabase;
use scheduler::SchedulerConfig;
use scheduler::billing::{Biller, BillingSettings};
use scheduler::clients::Neighbours;
use scheduler::domain::{Job, JobStatus, RetryPolicy, format_date, next_billing_date};
use scheduler::store::SchedulerStore;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

pub fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// A subscription as the fake order service keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSubscription {
    pub subscription_id: i64,
    pub item_id: i64,
    pub quantity: i32,
    pub period_days: i32,
    pub unit_price: i64,
    pub status: order_pb::SubscriptionStatus,
    pub last_billed_date: Option<NaiveDate>,
    pub next_billing_date: NaiveDate,
    pub cycle: i32,
    pub failed_attempts: i32,
}

#[derive(Default)]
pub struct OrderBooks {
    pub subscriptions: BTreeMap<i64, FakeSubscription>,
    /// (subscription, cycle, billed date): renewals recorded, each once.
    pub renewals: Vec<(i64, i32, NaiveDate)>,
    /// (subscription, cycle, attempt, final).
    pub failures: Vec<(i64, i32, i32, bool)>,
}

/// `OrderInternalService` with the contract's rules for the three calls billing makes.
#[derive(Clone, Default)]
pub struct FakeOrder {
    pub books: Arc<Mutex<OrderBooks>>,
}

impl FakeOrder {
    pub fn add(&self, subscription: FakeSubscription) {
        self.books
            .lock()
            .unwrap()
            .subscriptions
            .insert(subscription.subscription_id, subscription);
    }

    pub fn subscription(&self, id: i64) -> FakeSubscription {
        self.books.lock().unwrap().subscriptions[&id].clone()
    }

    pub fn set_status(&self, id: i64, status: order_pb::SubscriptionStatus) {
        self.books
            .lock()
            .unwrap()
            .subscriptions
            .get_mut(&id)
            .unwrap()
            .status = status;
    }

    pub fn renewals(&self) -> Vec<(i64, i32, NaiveDate)> {
        self.books.lock().unwrap().renewals.clone()
    }

    pub fn failures(&self) -> Vec<(i64, i32, i32, bool)> {
        self.books.lock().unwrap().failures.clone()
    }
}

fn message(subscription: &FakeSubscription) -> order_pb::Subscription {
    order_pb::Subscription {
        subscription_id: subscription.subscription_id,
        item_id: subscription.item_id,
        product_name: format!("item {}", subscription.item_id),
        quantity: subscription.quantity,
        period_days: subscription.period_days,
        unit_price: subscription.unit_price,
        status: subscription.status as i32,
        anchor_date: String::new(),
        last_billed_date: subscription
            .last_billed_date
            .map(format_date)
            .unwrap_or_default(),
        next_billing_date: format_date(subscription.next_billing_date),
        cycle: subscription.cycle,
        failed_attempts: subscription.failed_attempts,
    }
}

#[tonic::async_trait]
impl order_pb::order_internal_service_server::OrderInternalService for FakeOrder {
    async fn get_order_for_payment(
        &self,
        _: Request<order_pb::GetOrderForPaymentRequest>,
    ) -> Result<Response<order_pb::OrderForPayment>, Status> {
        Err(Status::unimplemented("not billing"))
    }

    async fn mark_order_paid(
        &self,
        _: Request<order_pb::MarkOrderPaidRequest>,
    ) -> Result<Response<order_pb::Order>, Status> {
        Err(Status::unimplemented("not billing"))
    }

    async fn mark_order_refunded(
        &self,
        _: Request<order_pb::MarkOrderRefundedRequest>,
    ) -> Result<Response<order_pb::Order>, Status> {
        Err(Status::unimplemented("not billing"))
    }

    async fn check_purchase(
        &self,
        _: Request<order_pb::CheckPurchaseRequest>,
    ) -> Result<Response<order_pb::CheckPurchaseResponse>, Status> {
        Err(Status::unimplemented("not billing"))
    }

    async fn get_subscription_for_billing(
        &self,
        request: Request<order_pb::GetSubscriptionForBillingRequest>,
    ) -> Result<Response<order_pb::Subscription>, Status> {
        let id = request.into_inner().subscription_id;
        let books = self.books.lock().unwrap();
        books
            .subscriptions
            .get(&id)
            .map(|subscription| Response::new(message(subscription)))
            .ok_or_else(|| Status::not_found("no such subscription"))
    }

    async fn record_renewal(
        &self,
        request: Request<order_pb::RecordRenewalRequest>,
    ) -> Result<Response<order_pb::RecordRenewalResponse>, Status> {
        let request = request.into_inner();
        let mut books = self.books.lock().unwrap();
        let books = &mut *books;
        let subscription = books
            .subscriptions
            .get_mut(&request.subscription_id)
            .ok_or_else(|| Status::not_found("no such subscription"))?;
        if request.cycle <= subscription.cycle {
            // Recorded before: the same answer, nothing new.
            return Ok(Response::new(order_pb::RecordRenewalResponse {
                subscription: Some(message(subscription)),
                renewal_order_id: 0,
            }));
        }
        if request.cycle != subscription.cycle + 1
            || matches!(
                subscription.status,
                order_pb::SubscriptionStatus::Canceled | order_pb::SubscriptionStatus::Suspended
            )
        {
            return Err(Status::failed_precondition(
                "not the next cycle of a live subscription",
            ));
        }
        let billed = day(&request.billed_date);
        assert_eq!(
            billed, subscription.next_billing_date,
            "billed on its due date"
        );
        subscription.cycle = request.cycle;
        subscription.last_billed_date = Some(billed);
        subscription.next_billing_date =
            next_billing_date(billed, subscription.period_days).unwrap();
        subscription.status = order_pb::SubscriptionStatus::Active;
        subscription.failed_attempts = 0;
        books
            .renewals
            .push((request.subscription_id, request.cycle, billed));
        Ok(Response::new(order_pb::RecordRenewalResponse {
            subscription: Some(message(subscription)),
            renewal_order_id: books.renewals.len() as i64,
        }))
    }

    async fn record_renewal_failure(
        &self,
        request: Request<order_pb::RecordRenewalFailureRequest>,
    ) -> Result<Response<order_pb::Subscription>, Status> {
        let request = request.into_inner();
        let mut books = self.books.lock().unwrap();
        let books = &mut *books;
        let subscription = books
            .subscriptions
            .get_mut(&request.subscription_id)
            .ok_or_else(|| Status::not_found("no such subscription"))?;
        subscription.failed_attempts = subscription.failed_attempts.max(request.attempt);
        subscription.status = if request.r#final {
            order_pb::SubscriptionStatus::Suspended
        } else {
            order_pb::SubscriptionStatus::PastDue
        };
        books.failures.push((
            request.subscription_id,
            request.cycle,
            request.attempt,
            request.r#final,
        ));
        Ok(Response::new(message(subscription)))
    }
}

#[derive(Default)]
pub struct PaymentBooks {
    /// (subscription, cycle) → amount: money that moved, once per cycle.
    pub ledger: BTreeMap<(i64, i32), i64>,
    /// Every call: (subscription, cycle, attempt).
    pub calls: Vec<(i64, i32, i32)>,
    /// Calls for a cycle already charged (answered from the record; no money moved).
    pub repeats_after_charged: u64,
    pub declining: HashSet<i64>,
    /// Calls still to fail with UNAVAILABLE before anything happens, per subscription.
    pub faults_before: HashMap<i64, u32>,
    /// Share of calls (0–100) failing with UNAVAILABLE before anything happens.
    pub fault_percent: u64,
    /// Share of successful charges whose answer is lost (UNAVAILABLE after the money moved).
    pub lost_answer_percent: u64,
    pub latency: Duration,
    pub counter: u64,
    /// Charges whose answer was lost on purpose.
    pub lost_answers: u64,
}

/// `PaymentInternalService.ChargeSubscription` with the contract's exactly-once rule.
#[derive(Clone, Default)]
pub struct FakePayment {
    pub books: Arc<Mutex<PaymentBooks>>,
}

impl FakePayment {
    pub fn ledger(&self) -> BTreeMap<(i64, i32), i64> {
        self.books.lock().unwrap().ledger.clone()
    }

    pub fn calls(&self) -> Vec<(i64, i32, i32)> {
        self.books.lock().unwrap().calls.clone()
    }

    pub fn decline(&self, subscription_id: i64) {
        self.books.lock().unwrap().declining.insert(subscription_id);
    }

    pub fn fail_next(&self, subscription_id: i64, calls: u32) {
        self.books
            .lock()
            .unwrap()
            .faults_before
            .insert(subscription_id, calls);
    }
}

#[tonic::async_trait]
impl payment_pb::payment_internal_service_server::PaymentInternalService for FakePayment {
    async fn charge_subscription(
        &self,
        request: Request<payment_pb::ChargeSubscriptionRequest>,
    ) -> Result<Response<payment_pb::ChargeSubscriptionResponse>, Status> {
        let request = request.into_inner();
        let latency = self.books.lock().unwrap().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut books = self.books.lock().unwrap();
        books.counter += 1;
        let roll = books.counter.wrapping_mul(2_654_435_761) % 100;
        books
            .calls
            .push((request.subscription_id, request.cycle, request.attempt));
        if let Some(left) = books.faults_before.get_mut(&request.subscription_id)
            && *left > 0
        {
            *left -= 1;
            return Err(Status::unavailable("injected fault"));
        }
        if roll < books.fault_percent {
            return Err(Status::unavailable("injected fault"));
        }
        let key = (request.subscription_id, request.cycle);
        let charged = payment_pb::ChargeSubscriptionResponse {
            outcome: payment_pb::ChargeOutcome::Charged as i32,
            tid: format!("T{}-{}", key.0, key.1),
            ..Default::default()
        };
        if books.ledger.contains_key(&key) {
            books.repeats_after_charged += 1;
            return Ok(Response::new(charged));
        }
        if books.declining.contains(&request.subscription_id) {
            return Ok(Response::new(payment_pb::ChargeSubscriptionResponse {
                outcome: payment_pb::ChargeOutcome::Declined as i32,
                decline_code: "-782".into(),
                decline_message: "insufficient funds".into(),
                ..Default::default()
            }));
        }
        books.ledger.insert(key, request.amount);
        if roll >= 100 - books.lost_answer_percent {
            books.lost_answers += 1;
            return Err(Status::unavailable("answer lost after charging"));
        }
        Ok(Response::new(charged))
    }

    async fn refund(
        &self,
        _: Request<payment_pb::RefundRequest>,
    ) -> Result<Response<payment_pb::RefundResponse>, Status> {
        Err(Status::unimplemented("not billing"))
    }

    async fn inactivate_subscription(
        &self,
        _: Request<payment_pb::InactivateSubscriptionRequest>,
    ) -> Result<Response<payment_pb::InactivateSubscriptionResponse>, Status> {
        Err(Status::unimplemented("not billing"))
    }
}

/// The fake neighbours on free ports, until `shutdown`.
pub struct World {
    pub order: FakeOrder,
    pub payment: FakePayment,
    pub order_addr: SocketAddr,
    pub payment_addr: SocketAddr,
    pub shutdown: Shutdown,
}

impl World {
    pub async fn start() -> World {
        let order = FakeOrder::default();
        let payment = FakePayment::default();
        let shutdown = Shutdown::new();
        let order_addr = serve(
            tonic::service::Routes::new(
                order_pb::order_internal_service_server::OrderInternalServiceServer::new(
                    order.clone(),
                ),
            ),
            shutdown.clone(),
        )
        .await;
        let payment_addr = serve(
            tonic::service::Routes::new(
                payment_pb::payment_internal_service_server::PaymentInternalServiceServer::new(
                    payment.clone(),
                ),
            ),
            shutdown.clone(),
        )
        .await;
        World {
            order,
            payment,
            order_addr,
            payment_addr,
            shutdown,
        }
    }

    /// A subscription at the order service and its job at the scheduler, due on `next`.
    pub async fn subscribe(
        &self,
        store: &SchedulerStore,
        id: i64,
        period_days: i32,
        next: NaiveDate,
    ) {
        self.order.add(FakeSubscription {
            subscription_id: id,
            item_id: 1000 + id,
            quantity: 2,
            period_days,
            unit_price: 5_000 + id,
            status: order_pb::SubscriptionStatus::Active,
            last_billed_date: None,
            next_billing_date: next,
            cycle: 0,
            failed_attempts: 0,
        });
        store
            .create(&job(id, period_days, next), chrono::Utc::now())
            .await
            .unwrap();
    }
}

pub fn job(id: i64, period_days: i32, next: NaiveDate) -> Job {
    Job {
        subscription_id: id,
        user_id: 10_000 + id,
        item_id: 1000 + id,
        item_name: String::new(),
        quantity: 2,
        unit_price: 5_000 + id,
        period_days,
        origin_order_id: 20_000 + id,
        status: JobStatus::Active,
        next_billing_date: next,
        last_billed_date: None,
        cycle: 0,
        failed_attempts: 0,
        next_attempt_date: None,
        state_version: 0,
    }
}

async fn serve(routes: tonic::service::Routes, shutdown: Shutdown) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown.wait())
            .await
            .unwrap();
    });
    addr
}

/// A biller (one replica's billing engine) over `store`, calling the world's fakes.
pub fn biller(
    world: &World,
    store: &SchedulerStore,
    clock: SharedClock,
    settings: BillingSettings,
    tasks: &Tasks,
    shutdown: &Shutdown,
) -> Arc<Biller> {
    let order = Upstream::new(
        "order",
        &UpstreamConfig::new(format!("http://{}", world.order_addr)),
        tasks,
        shutdown,
    )
    .unwrap();
    let mut payment_config = UpstreamConfig::new(format!("http://{}", world.payment_addr));
    // Faults are the test's point: the breaker must not open on them, and retries are the
    // scheduler's own (one immediate retry), not the client's.
    payment_config.policy.breaker.open_for_ms = 1;
    payment_config.policy.breaker.failure_rate_percent = 100;
    payment_config.policy.max_retries = 0;
    payment_config.policy.max_concurrent = 256;
    let payment = Upstream::new("payment", &payment_config, tasks, shutdown).unwrap();
    let neighbours = Neighbours::new(
        order,
        payment,
        Duration::from_secs(5),
        Duration::from_secs(5),
    );
    Arc::new(Biller::new(
        store.clone(),
        neighbours,
        clock,
        settings,
        shutdown.clone(),
    ))
}

pub fn settings(max_in_flight: usize) -> BillingSettings {
    BillingSettings {
        policy: RetryPolicy::default(),
        lease: Duration::from_secs(60),
        max_in_flight,
    }
}

pub fn manual_clock() -> ManualClock {
    ManualClock::starting_at("2026-01-01T00:00:00Z".parse().unwrap())
}

/// A running scheduler service and what tests need to call it.
pub struct RunningScheduler {
    pub channel: Channel,
    pub issuer: TokenIssuer,
    pub store: SchedulerStore,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<Result<(), scheduler::StartError>>,
}

impl RunningScheduler {
    pub async fn start(database: &TestDatabase, world: &World) -> RunningScheduler {
        let key = SigningKey::generate();
        let mut config = SchedulerConfig {
            server: ServerConfig::loopback(),
            database: database.config.clone(),
            jwks: jwks(&[key.verification_key()]).to_string(),
            ..SchedulerConfig::default()
        };
        config.order = UpstreamConfig::new(format!("http://{}", world.order_addr));
        config.payment = UpstreamConfig::new(format!("http://{}", world.payment_addr));
        // Runs happen when a test asks (asOf), never behind its back.
        config.billing.loop_enabled = false;
        let bound = scheduler::bind(config).await.unwrap();
        let url = format!("http://{}", bound.grpc_addr());
        let shutdown = Shutdown::new();
        let server = tokio::spawn(bound.serve(shutdown.clone()));
        pillivery_platform::server::wait_until_serving(
            url.trim_start_matches("http://").parse().unwrap(),
            pillivery_platform::server::READINESS,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        let store = SchedulerStore::new(database.connect().await);
        RunningScheduler {
            channel,
            issuer: TokenIssuer::new(key, TokenConfig::default()),
            store,
            shutdown,
            server,
        }
    }

    pub fn token(&self, role: Role) -> String {
        self.issuer.issue(1, role, chrono::Utc::now()).token
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        self.server.await.unwrap().unwrap();
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

#[track_caller]
pub fn assert_error(status: Status, code: Code, reason: &str) -> DecodedError {
    let error = ApiError::from_status(&status).unwrap_or_else(|| panic!("no details: {status:?}"));
    assert_eq!(
        (error.code, error.reason.as_str()),
        (code, reason),
        "{status:?}"
    );
    error
}
