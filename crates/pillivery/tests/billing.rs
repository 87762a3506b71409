//! Recurring billing with the whole embedded fleet (issue 7, "Done when"; SPEC sections 5 and 7):
//! 200 subscriptions with mixed periods, created the real way (orders with subscription lines
//! paid through the payment sandbox's page), billed over a simulated year by admin `asOf` runs
//! through the gateway (`POST /api/admin/billing/runs`), stepping a week per run (the scheduler
//! catches up every missed cycle) and day by day through a window in which the sandbox declines
//! every subscription charge.
//!
//! The test keeps a model of every subscription that applies SPEC's rules by themselves (cycle n
//! due on `lastBilledDate + periodDays`, billed on its due date however late the run; a failure
//! makes the subscription PAST_DUE and is retried the next day, three times, then SUSPENDED).
//! After every run it compares, exactly: the run's counts, and every subscription's status,
//! cycle, dates and failed attempts as `GET /api/subscriptions` shows them. At the end it checks
//! the sandbox's ledger (one charge per (subscription, cycle), each for its amount, nothing
//! else), the renewal orders in `GET /api/orders`, the catalog's sales, and which PG keys (SIDs)
//! are still active.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, NaiveDate, Utc};
use common::{TestFleet, location, send_full as send, start_fleet};
use pillivery_proto::scheduler as spb;
use pillivery_proto::scheduler::scheduler_internal_service_client::SchedulerInternalServiceClient;
use pillivery_sandbox_pg::{
    Endpoint, EndpointSet, EntryKind, FaultConfig, LedgerFilter, SidStatus, SubscriptionFilter,
};
use pillivery_testkit::eventually;
use pillivery_testkit::reqwest::Client;
use serde_json::{Value, json};

/// How long event-driven effects (jobs created, sales, SIDs deactivated) may take to show.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where the fleet's default payment configuration sends the buyer after an approval.
const SUCCESS_PAGE: &str = "http://localhost:3000/payments/success";

/// Customers; each places the same seven orders below.
const BUYERS: usize = 5;

/// Subscription lines of each customer's orders (40 per customer, 200 in all). The two
/// single-line orders each own a PG key (SID) alone, so cancelling or suspending that one
/// subscription must deactivate its SID; the SIDs of the others are shared.
const ORDER_SHAPES: [usize; 7] = [1, 1, 6, 6, 6, 10, 10];

/// Periods in days, mixed through every order (SPEC: 30–365).
const PERIODS: [u64; 8] = [30, 31, 45, 60, 90, 120, 180, 365];

/// The simulated year, in days after the first payment.
const YEAR: u64 = 365;

/// Days between regular runs: every run catches up what came due since the last one.
const STEP: u64 = 7;

/// From this day on (after the anchor) the decline window may start.
const DECLINES_FROM: u64 = 200;

/// Cancellations happen after the first run on or after this day.
const CANCEL_FROM: u64 = 120;

fn date(value: &Value) -> NaiveDate {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("a YYYY-MM-DD date, got {value}"))
}

fn plus(day: NaiveDate, days: u64) -> NaiveDate {
    day.checked_add_days(Days::new(days)).expect("a date")
}

/// A signed-up, logged-in customer (or the administrator).
struct Caller {
    client: Client,
    base: String,
    token: String,
}

impl Caller {
    async fn log_in(base: &str, email: &str, password: &str) -> Caller {
        let client = pillivery_testkit::http_client();
        let (status, _, tokens) = send(
            client
                .post(format!("{base}/api/auth/login"))
                .json(&json!({"email": email, "password": password})),
        )
        .await;
        assert_eq!(status, 200, "{tokens}");
        Caller {
            client,
            base: base.to_owned(),
            token: tokens["accessToken"].as_str().expect("a token").to_owned(),
        }
    }

    async fn sign_up(base: &str, n: usize) -> Caller {
        let client = pillivery_testkit::http_client();
        let email = format!("billing{n}@example.com");
        let (status, _, body) = send(client.post(format!("{base}/api/users")).json(&json!({
            "email": email,
            "password": "secret-pass1",
            "displayName": format!("billing{n}"),
            "realName": "김정기",
            "phone": format!("010-5555-{n:04}"),
            "city": "서울",
            "detailAddress": "강남구 1"
        })))
        .await;
        assert_eq!(status, 201, "{body}");
        Caller::log_in(base, &email, "secret-pass1").await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, body) =
            send(self.client.get(self.url(path)).bearer_auth(&self.token)).await;
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, _, body) = send(
            self.client
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await;
        (status, body)
    }

    /// `POST /api/orders` then the payment: ready, the sandbox page with `auto=approve`, the
    /// gateway's approve route. Answers the paid order and the payment's tid.
    async fn order_and_pay(&self, key: &str, lines: Value) -> (Value, String) {
        let (status, _, order) = send(
            self.client
                .post(self.url("/api/orders"))
                .bearer_auth(&self.token)
                .header("Idempotency-Key", key)
                .json(&json!({
                    "lines": lines,
                    "fromCart": false,
                    "receiver": {"name": "김수령", "phone": "010-1234-5678", "city": "서울", "detailAddress": "강남구 1"}
                })),
        )
        .await;
        assert_eq!(status, 201, "{order}");
        let order_id = order["orderId"].as_i64().expect("an order id");
        let (status, _, ready) = send(
            self.client
                .post(self.url(&format!("/api/payments/orders/{order_id}/ready")))
                .bearer_auth(&self.token)
                .header("Idempotency-Key", format!("ready-{key}"))
                .json(&json!({})),
        )
        .await;
        assert_eq!(status, 200, "{ready}");
        let page = ready["nextRedirectPcUrl"].as_str().expect("a page URL");
        let separator = if page.contains('?') { '&' } else { '?' };
        let (status, headers, _) =
            send(self.client.get(format!("{page}{separator}auto=approve"))).await;
        assert_eq!(status, 302, "the sandbox page redirects");
        let (status, headers, body) = send(self.client.get(location(&headers))).await;
        assert_eq!(
            status, 302,
            "the approval of order {order_id} redirects: {body}"
        );
        assert_eq!(
            location(&headers),
            format!("{SUCCESS_PAGE}?orderId={order_id}")
        );
        let tid = ready["tid"].as_str().expect("a tid").to_owned();
        (order, tid)
    }

    /// Every page of a list endpoint (`size` 100).
    async fn all(&self, path: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        for page in 1.. {
            let (status, body) = self.get(&format!("{path}?page={page}&size=100")).await;
            assert_eq!(status, 200, "{body}");
            let data = body["data"].as_array().expect("a page of rows");
            rows.extend(data.iter().cloned());
            if data.len() < 100 {
                break;
            }
        }
        rows
    }
}

/// One subscription as SPEC's rules say it must be.
#[derive(Clone, Debug)]
struct Sub {
    id: i64,
    buyer: usize,
    origin_order: i64,
    item: i64,
    quantity: i64,
    unit_price: i64,
    period: u64,
    status: &'static str,
    cycle: i64,
    last_billed: NaiveDate,
    next_billing: NaiveDate,
    failed: i64,
    retry_on: Option<NaiveDate>,
    anchor: NaiveDate,
    /// A renewal of it was ever declined (its dates then no longer follow the anchor alone).
    ever_failed: bool,
    /// When the customer cancelled it: no charge may come later.
    canceled_at: Option<DateTime<Utc>>,
}

impl Sub {
    fn billable(&self) -> bool {
        matches!(self.status, "ACTIVE" | "PAST_DUE")
    }

    fn due(&self, as_of: NaiveDate) -> bool {
        self.billable()
            && self.next_billing <= as_of
            && self.retry_on.is_none_or(|retry_on| retry_on <= as_of)
    }

    /// What `GET /api/subscriptions` must show for it.
    fn expected_view(&self) -> Value {
        json!({
            "status": self.status,
            "cycle": self.cycle,
            "lastBilledDate": self.last_billed.to_string(),
            "nextBillingDate": self.next_billing.to_string(),
            "failedAttempts": self.failed,
        })
    }
}

fn actual_view(row: &Value) -> Value {
    json!({
        "status": row["status"],
        "cycle": row["cycle"].as_i64().unwrap_or(0),
        "lastBilledDate": row["lastBilledDate"],
        "nextBillingDate": row["nextBillingDate"],
        "failedAttempts": row["failedAttempts"].as_i64().unwrap_or(0),
    })
}

/// What a run must answer (`faults` and `deferred` must be 0: nothing here is a fault).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    charged: i64,
    declined: i64,
    retried: i64,
    suspended: i64,
    faults: i64,
    deferred: i64,
}

impl Counts {
    fn of(run: &Value) -> Counts {
        // proto3 JSON leaves zero counts out.
        let count = |name: &str| run[name].as_i64().unwrap_or(0);
        Counts {
            charged: count("charged"),
            declined: count("declined"),
            retried: count("retried"),
            suspended: count("suspended"),
            faults: count("faults"),
            deferred: count("deferred"),
        }
    }

    fn add(&mut self, other: Counts) {
        self.charged += other.charged;
        self.declined += other.declined;
        self.retried += other.retried;
        self.suspended += other.suspended;
    }
}

#[derive(Default)]
struct Model {
    subs: BTreeMap<i64, Sub>,
    /// Every (subscription, cycle) charged, with its amount.
    charges: BTreeMap<(i64, i64), i64>,
    /// Paid quantities per item: first orders and renewals.
    sold: BTreeMap<i64, i64>,
}

impl Model {
    /// A run as of `as_of`; every charge declined when `declining`.
    fn run(&mut self, as_of: NaiveDate, declining: bool) -> Counts {
        let mut counts = Counts::default();
        for sub in self.subs.values_mut() {
            if !sub.due(as_of) {
                continue;
            }
            loop {
                if declining {
                    sub.ever_failed = true;
                    counts.declined += 1;
                    sub.failed += 1;
                    // Failed on D, retried on D+1, D+2, D+3; the fourth failure suspends.
                    if sub.failed > 3 {
                        sub.status = "SUSPENDED";
                        sub.retry_on = None;
                        counts.suspended += 1;
                    } else {
                        sub.status = "PAST_DUE";
                        sub.retry_on = Some(plus(as_of, 1));
                        counts.retried += 1;
                    }
                    break;
                }
                counts.charged += 1;
                sub.cycle += 1;
                self.charges
                    .insert((sub.id, sub.cycle), sub.unit_price * sub.quantity);
                *self.sold.entry(sub.item).or_default() += sub.quantity;
                // Billed on its due date, however late the run: the next cycle counts from it.
                sub.last_billed = sub.next_billing;
                sub.next_billing = plus(sub.next_billing, sub.period);
                sub.status = "ACTIVE";
                sub.failed = 0;
                sub.retry_on = None;
                if sub.next_billing > as_of {
                    break;
                }
            }
        }
        counts
    }
}

/// The fleet under test with its administrator and customers.
struct Billing {
    test: TestFleet,
    admin: Caller,
    buyers: Vec<Caller>,
    model: Model,
    /// SID (by the first payment's tid) of every paid order with subscription lines.
    order_tids: BTreeMap<i64, String>,
    runs: usize,
    totals: Counts,
}

impl Billing {
    /// `POST /api/admin/billing/runs`, compared with the model, then every subscription.
    async fn run(&mut self, as_of: NaiveDate, declining: bool) {
        let (status, body) = self
            .admin
            .post(
                "/api/admin/billing/runs",
                json!({"asOf": as_of.to_string()}),
            )
            .await;
        assert_eq!(status, 200, "run as of {as_of}: {body}");
        assert_eq!(body["asOf"], json!(as_of.to_string()), "{body}");
        let expected = self.model.run(as_of, declining);
        assert_eq!(Counts::of(&body), expected, "run as of {as_of}: {body}");
        self.runs += 1;
        self.totals.add(expected);
        self.check_subscriptions(as_of).await;
    }

    /// Every subscription as the order service shows it equals the model.
    async fn check_subscriptions(&self, as_of: NaiveDate) {
        let mut wrong = Vec::new();
        let mut seen = 0;
        for (index, buyer) in self.buyers.iter().enumerate() {
            for row in buyer.all("/api/subscriptions").await {
                let id = row["subscriptionId"].as_i64().expect("an id");
                let sub = &self.model.subs[&id];
                assert_eq!(sub.buyer, index);
                seen += 1;
                let (expected, actual) = (sub.expected_view(), actual_view(&row));
                if expected != actual {
                    wrong.push(format!(
                        "subscription {id} (period {}): expected {expected}, got {actual}",
                        sub.period
                    ));
                }
            }
        }
        assert_eq!(seen, self.model.subs.len());
        assert!(
            wrong.is_empty(),
            "after the run as of {as_of}, {} subscriptions differ:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    async fn cancel(&mut self, id: i64) {
        let buyer = &self.buyers[self.model.subs[&id].buyer];
        let (status, body) = buyer
            .post(&format!("/api/subscriptions/{id}/cancel"), json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "CANCELED", "{body}");
        let sub = self.model.subs.get_mut(&id).expect("a subscription");
        sub.status = "CANCELED";
        sub.retry_on = None;
        sub.canceled_at = Some(Utc::now());
    }

    /// The SID the payment of `order` created, as the sandbox lists it.
    fn sid_status(&self, order: i64) -> Option<SidStatus> {
        let tid = &self.order_tids[&order];
        self.test
            .fleet
            .sandbox
            .subscriptions(&SubscriptionFilter::default())
            .into_iter()
            .find(|sid| &sid.first_tid == tid)
            .map(|sid| sid.status)
    }

    /// Orders whose subscriptions all ended (cancelled or suspended): their SID must be
    /// inactive; every other SID active.
    fn expected_sid_statuses(&self) -> BTreeMap<i64, SidStatus> {
        self.order_tids
            .keys()
            .map(|&order| {
                let billing = self
                    .model
                    .subs
                    .values()
                    .any(|sub| sub.origin_order == order && sub.billable());
                let status = if billing {
                    SidStatus::Active
                } else {
                    SidStatus::Inactive
                };
                (order, status)
            })
            .collect()
    }

    async fn sids_settle(&self, what: &str) {
        let expected = self.expected_sid_statuses();
        eventually(what, PATIENCE, || async {
            expected
                .iter()
                .all(|(&order, &status)| self.sid_status(order) == Some(status))
                .then_some(())
        })
        .await;
    }
}

/// Creates the customers and their paid orders; answers the model of every subscription.
async fn subscribe(test: &TestFleet) -> (Vec<Caller>, Model, BTreeMap<i64, String>) {
    let base = test.base.clone();
    let per_buyer: usize = ORDER_SHAPES.iter().sum();
    // Customers order in parallel (each one's orders in sequence): many payments at once, as
    // in production, and a shorter test.
    let placed = futures::future::join_all((0..BUYERS).map(|buyer_index| {
        let base = base.clone();
        async move {
            let buyer = Caller::sign_up(&base, buyer_index).await;
            let mut orders = Vec::new();
            let mut line_index = buyer_index * per_buyer;
            for (order_index, &lines) in ORDER_SHAPES.iter().enumerate() {
                let mut body: Vec<Value> = (line_index..line_index + lines)
                    .map(|j| {
                        json!({
                            // 37 is prime to 180: the lines of one order have distinct items.
                            "itemId": 1 + (j * 37) % 180,
                            "quantity": 1 + j % 3,
                            "periodDays": PERIODS[j % PERIODS.len()],
                        })
                    })
                    .collect();
                line_index += lines;
                // The second order also buys one item outright: a mixed order, whose normal
                // line counts as sales once and never renews.
                if order_index == 1 {
                    body.push(json!({"itemId": 181 + buyer_index, "quantity": 2}));
                }
                let key = format!("billing-{buyer_index}-{order_index}");
                let (order, tid) = buyer.order_and_pay(&key, Value::Array(body)).await;
                orders.push((order, tid));
            }
            (buyer, orders)
        }
    }))
    .await;

    let mut model = Model::default();
    let mut order_tids = BTreeMap::new();
    let mut buyers = Vec::new();
    for (index, (buyer, orders)) in placed.into_iter().enumerate() {
        for (order, tid) in &orders {
            let order_id = order["orderId"].as_i64().expect("an order id");
            order_tids.insert(order_id, tid.clone());
            for line in order["lines"].as_array().expect("lines") {
                let item = line["itemId"].as_i64().expect("an item");
                *model.sold.entry(item).or_default() += line["quantity"].as_i64().unwrap();
            }
        }
        let rows = buyer.all("/api/subscriptions").await;
        assert_eq!(rows.len(), per_buyer, "one subscription per line");
        for row in rows {
            let id = row["subscriptionId"].as_i64().expect("an id");
            let item = row["itemId"].as_i64().expect("an item");
            let period = row["periodDays"].as_u64().expect("a period");
            // Which order created it: the one with a subscription line of this item.
            let origin_order = orders
                .iter()
                .map(|(order, _)| order)
                .find(|order| {
                    order["lines"].as_array().unwrap().iter().any(|line| {
                        line["itemId"] == json!(item) && line["periodDays"] == json!(period)
                    })
                })
                .and_then(|order| order["orderId"].as_i64())
                .expect("the subscription's order");
            let anchor = date(&row["anchorDate"]);
            assert_eq!(row["status"], "ACTIVE", "{row}");
            assert_eq!(date(&row["nextBillingDate"]), plus(anchor, period), "{row}");
            model.subs.insert(
                id,
                Sub {
                    id,
                    buyer: index,
                    origin_order,
                    item,
                    quantity: row["quantity"].as_i64().unwrap(),
                    unit_price: row["unitPrice"].as_i64().unwrap(),
                    period,
                    status: "ACTIVE",
                    cycle: 0,
                    last_billed: anchor,
                    next_billing: plus(anchor, period),
                    failed: 0,
                    retry_on: None,
                    anchor,
                    ever_failed: false,
                    canceled_at: None,
                },
            );
        }
        buyers.push(buyer);
    }
    (buyers, model, order_tids)
}

/// The decline window's first day: a date after `after` on which a subscription that owns its
/// SID alone is due (so its suspension must deactivate the SID), preferably one with other
/// subscriptions due in the three days after (they fail, then recover once declines stop).
fn decline_window(model: &Model, after: NaiveDate) -> NaiveDate {
    let alone = |sub: &Sub| {
        model
            .subs
            .values()
            .filter(|other| other.origin_order == sub.origin_order)
            .count()
            == 1
    };
    let mut candidates: Vec<NaiveDate> = model
        .subs
        .values()
        .filter(|sub| sub.billable() && sub.next_billing > after && alone(sub))
        .map(|sub| sub.next_billing)
        .collect();
    candidates.sort();
    let recovering = |day: NaiveDate| {
        model
            .subs
            .values()
            .any(|sub| sub.billable() && sub.next_billing > day && sub.next_billing <= plus(day, 3))
    };
    candidates
        .iter()
        .copied()
        .find(|&day| recovering(day))
        .or_else(|| candidates.first().copied())
        .expect("a subscription that owns its SID is still billed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_are_billed_exactly_once_over_a_year() {
    let started = Instant::now();
    let test = start_fleet().await;
    let base = test.base.clone();
    let admin = Caller::log_in(&base, pillivery::DEFAULT_ADMIN_EMAIL, "Admin-test-1").await;

    // Sales before anything is sold (demo items may carry some).
    let anonymous = pillivery_testkit::http_client();
    let sales_of = |item: i64| {
        let anonymous = anonymous.clone();
        let url = format!("{base}/api/items/{item}");
        async move {
            let (status, _, body) = send(anonymous.get(url)).await;
            assert_eq!(status, 200, "{body}");
            body["sales"].as_i64().unwrap_or(0)
        }
    };
    let mut sales_before = BTreeMap::new();
    for item in 1..=(180 + BUYERS as i64) {
        sales_before.insert(item, sales_of(item).await);
    }

    let (buyers, model, order_tids) = subscribe(&test).await;
    assert_eq!(model.subs.len(), 200);
    let created = started.elapsed();
    let anchor = model
        .subs
        .values()
        .map(|sub| sub.last_billed)
        .min()
        .expect("subscriptions");

    // The scheduler learns of each subscription from its SubscriptionCreated event; billing
    // before every job exists would test nothing. Its internal gRPC port shows the jobs.
    let address = test
        .fleet
        .service("scheduler")
        .expect("a scheduler")
        .grpc_addr;
    let scheduler = SchedulerInternalServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the scheduler's gRPC port");
    let ids: Vec<i64> = model.subs.keys().copied().collect();
    eventually("a billing job for every subscription", PATIENCE, || {
        let mut scheduler = scheduler.clone();
        let ids = ids.clone();
        async move {
            for subscription_id in ids {
                let job = scheduler
                    .get_job(spb::GetJobRequest { subscription_id })
                    .await
                    .ok()?
                    .into_inner();
                assert_eq!(job.status, spb::JobStatus::Active as i32, "{job:?}");
                assert_eq!(job.cycle, 0, "{job:?}");
            }
            Some(())
        }
    })
    .await;

    let mut billing = Billing {
        test,
        admin,
        buyers,
        model,
        order_tids,
        runs: 0,
        totals: Counts::default(),
    };

    // The admin route is the administrator's alone, and a malformed date is a 400.
    let (status, body) = billing.buyers[0]
        .post(
            "/api/admin/billing/runs",
            json!({"asOf": plus(anchor, 30).to_string()}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = billing
        .admin
        .post("/api/admin/billing/runs", json!({"asOf": "2026-02-30"}))
        .await;
    assert_eq!(status, 400, "{body}");

    // The year, a week per run. The first run on or after day CANCEL_FROM is followed by
    // cancellations; the first regular run on or after day DECLINES_FROM gives way to the
    // decline window.
    let end = plus(anchor, YEAR);
    let mut last = anchor;
    let mut canceled: Vec<i64> = Vec::new();
    let mut suspended_alone = None;
    let mut window_done = false;
    while last < end {
        let next = plus(last, STEP).min(end);
        if !window_done && next >= plus(anchor, DECLINES_FROM) {
            window_done = true;
            let first = decline_window(&billing.model, last);
            // Everything due before the window is billed first.
            billing.run(first.pred_opt().expect("a date"), false).await;
            let target = billing
                .model
                .subs
                .values()
                .find(|sub| {
                    sub.billable()
                        && sub.next_billing == first
                        && billing
                            .model
                            .subs
                            .values()
                            .filter(|other| other.origin_order == sub.origin_order)
                            .count()
                            == 1
                })
                .map(|sub| sub.id)
                .expect("the window's subscription");
            billing
                .test
                .fleet
                .sandbox
                .set_faults(FaultConfig {
                    decline_rate: 1.0,
                    endpoints: EndpointSet::of(&[Endpoint::Subscription]),
                    ..FaultConfig::default()
                })
                .expect("valid faults");
            // D, D+1, D+2, D+3: declined each day; PAST_DUE with 1, 2, 3 failed attempts,
            // then SUSPENDED (the model and the comparison after each run check every
            // subscription; this one is read on its own as well).
            let buyer = billing.model.subs[&target].buyer;
            for (day, (status, failed)) in [
                ("PAST_DUE", 1),
                ("PAST_DUE", 2),
                ("PAST_DUE", 3),
                ("SUSPENDED", 4),
            ]
            .into_iter()
            .enumerate()
            {
                billing.run(plus(first, day as u64), true).await;
                let (code, sub) = billing.buyers[buyer]
                    .get(&format!("/api/subscriptions/{target}"))
                    .await;
                assert_eq!(code, 200, "{sub}");
                assert_eq!(
                    (sub["status"].as_str(), sub["failedAttempts"].as_i64()),
                    (Some(status), Some(failed)),
                    "day {day} of the ladder: {sub}"
                );
            }
            billing
                .test
                .fleet
                .sandbox
                .set_faults(FaultConfig::default())
                .expect("no faults");
            // Those whose ladder began later in the window are charged on their retry day.
            let after = plus(first, 4);
            billing.run(after, false).await;
            suspended_alone = Some(target);
            last = after;
            continue;
        }
        billing.run(next, false).await;
        last = next;
        if canceled.is_empty() && last >= plus(anchor, CANCEL_FROM) {
            // One subscription that owns its SID, one that shares it, one from a mixed order
            // (also alone on its SID): cancelled between runs, never charged again.
            let pick = |buyer: usize, shared: bool| {
                billing
                    .model
                    .subs
                    .values()
                    .find(|sub| {
                        let sharing = billing
                            .model
                            .subs
                            .values()
                            .filter(|other| other.origin_order == sub.origin_order)
                            .count();
                        sub.buyer == buyer && sub.billable() && (sharing > 1) == shared
                    })
                    .map(|sub| sub.id)
                    .expect("a subscription to cancel")
            };
            canceled = vec![pick(0, false), pick(1, true), pick(2, false)];
            for &id in &canceled {
                billing.cancel(id).await;
            }
            // The SIDs owned alone go inactive (SubscriptionCanceled → payment → PG); the
            // shared one stays active for the other subscriptions of its order.
            billing.sids_settle("cancelled subscriptions' SIDs").await;
        }
    }
    let billed = started.elapsed();

    let model = &billing.model;
    let suspended_alone = suspended_alone.expect("the decline window ran");
    assert_eq!(model.subs[&suspended_alone].status, "SUSPENDED");
    assert!(billing.totals.charged >= 1_000, "{:?}", billing.totals);
    assert!(billing.totals.suspended >= 1, "{:?}", billing.totals);

    // A repeated run for a date already billed finds nothing to do.
    let (status, body) = billing
        .admin
        .post("/api/admin/billing/runs", json!({"asOf": end.to_string()}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(Counts::of(&body), Counts::default(), "{body}");

    // The PG's books: exactly one charge per (subscription, cycle), for its amount; nothing for
    // a cancelled subscription after its cancellation.
    let ledger = billing.test.fleet.sandbox.ledger(&LedgerFilter {
        cid: Some(pillivery_sandbox_pg::SUBSCRIPTION_CID.to_owned()),
        kind: Some(EntryKind::Charge),
        ..LedgerFilter::default()
    });
    let mut charged: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    for entry in ledger
        .entries
        .iter()
        .filter(|entry| entry.endpoint == Endpoint::Subscription)
    {
        let (sub, cycle) = entry
            .partner_order_id
            .strip_prefix("sub-")
            .and_then(|rest| rest.split_once("-c"))
            .and_then(|(sub, cycle)| Some((sub.parse().ok()?, cycle.parse().ok()?)))
            .unwrap_or_else(|| panic!("a renewal's partner_order_id: {entry:?}"));
        if let Some(at) = model.subs.get(&sub).and_then(|sub| sub.canceled_at) {
            assert!(entry.at < at, "charged after the cancellation: {entry:?}");
        }
        charged.entry((sub, cycle)).or_default().push(entry.amount);
    }
    let twice: Vec<_> = charged.iter().filter(|(_, a)| a.len() > 1).collect();
    assert!(twice.is_empty(), "charged more than once: {twice:?}");
    let charged: BTreeMap<(i64, i64), i64> = charged
        .into_iter()
        .map(|(key, amounts)| (key, amounts[0]))
        .collect();
    assert_eq!(charged.len(), model.charges.len());
    assert!(
        charged == model.charges,
        "the ledger differs from the cycles due"
    );
    assert_eq!(model.charges.len() as i64, billing.totals.charged);
    // And, independently of the model, the closed form: a subscription never declined nor
    // cancelled has one cycle per full period between its anchor and the year's end.
    for sub in model.subs.values() {
        if !sub.ever_failed && sub.canceled_at.is_none() {
            let days = (end - sub.anchor).num_days();
            let cycles = days / sub.period as i64;
            let charged = (1..)
                .take_while(|cycle| charged.contains_key(&(sub.id, *cycle)))
                .count();
            assert_eq!(charged as i64, cycles, "subscription {sub:?}");
        }
    }

    // Renewal orders: one PAID order per charged cycle, in the owner's order history.
    let mut renewals = BTreeMap::new();
    for buyer in &billing.buyers {
        for order in buyer.all("/api/orders").await {
            let Some(sub) = order["subscriptionId"].as_i64() else {
                assert!(order["cycle"].is_null(), "{order}");
                continue;
            };
            let cycle = order["cycle"].as_i64().expect("a renewal's cycle");
            assert_eq!(order["status"], "PAID", "{order}");
            let line = &order["lines"][0];
            assert_eq!(line["itemId"], json!(model.subs[&sub].item), "{order}");
            assert_eq!(
                line["quantity"],
                json!(model.subs[&sub].quantity),
                "{order}"
            );
            let total = order["totalPrice"].as_i64().expect("a total");
            assert!(
                renewals.insert((sub, cycle), total).is_none(),
                "two renewal orders for {sub} cycle {cycle}"
            );
        }
    }
    assert!(
        renewals == model.charges,
        "renewal orders differ from the charges: {} orders, {} charges",
        renewals.len(),
        model.charges.len()
    );

    // Sales: every paid quantity, first orders and renewals (through OrderPaid and
    // SubscriptionRenewed events, so they may lag).
    let expected_sales: BTreeMap<i64, i64> = sales_before
        .iter()
        .map(|(&item, &before)| {
            (
                item,
                before + model.sold.get(&item).copied().unwrap_or_default(),
            )
        })
        .collect();
    let sales_of = &sales_of;
    eventually("the catalog's sales", PATIENCE, || async {
        let mut wrong = BTreeMap::new();
        for (&item, &want) in &expected_sales {
            let got = sales_of(item).await;
            if got != want {
                wrong.insert(item, (want, got));
            }
        }
        wrong.is_empty().then_some(())
    })
    .await;

    // PG keys: inactive exactly where every subscription of the order ended (cancelled or
    // suspended), including the suspended subscription that owned its SID.
    billing.sids_settle("SIDs after the year").await;
    assert_eq!(
        billing.sid_status(model.subs[&suspended_alone].origin_order),
        Some(SidStatus::Inactive)
    );
    let sharing = billing.model.subs[&canceled[1]].origin_order;
    assert_eq!(billing.sid_status(sharing), Some(SidStatus::Active));

    eprintln!(
        "billing: {} subscriptions created in {:.1?}; {} runs over {YEAR} days in {:.1?}: \
         {:?}; total {:.1?}",
        billing.model.subs.len(),
        created,
        billing.runs,
        billed - created,
        billing.totals,
        started.elapsed()
    );
    billing.test.fleet.shutdown().await.expect("a clean stop");
}
