//! Paying through the gateway's REST API with the whole embedded fleet: the real user, catalog,
//! order and payment services and the in-process payment sandbox (KakaoPay's API), followed the
//! way a browser would, without one: the sandbox's page answers `auto=approve|cancel|fail` with
//! a 302 to the gateway's approve / cancel / fail routes, which answer 302 to the storefront (or
//! JSON when asked). The test client follows no redirect by itself, so each hop is checked.

mod common;

use std::time::Duration;

use common::{TestFleet, location, send_full as send, start_fleet};
use pillivery_sandbox_pg::{LedgerFilter, SidStatus, SubscriptionFilter};
use pillivery_testkit::eventually;
use pillivery_testkit::reqwest::Client;
use pillivery_testkit::reqwest::header::ACCEPT;
use serde_json::{Value, json};

/// How long event-driven effects (sales, refunds, SID deactivation) may take to show.
const PATIENCE: Duration = Duration::from_secs(20);

/// The storefront pages of the fleet's default payment configuration.
const SUCCESS_PAGE: &str = "http://localhost:3000/payments/success";
const CANCEL_PAGE: &str = "http://localhost:3000/payments/cancel";
const FAIL_PAGE: &str = "http://localhost:3000/payments/fail";

/// A signed-up, logged-in customer.
struct Buyer<'a> {
    test: &'a TestFleet,
    client: Client,
    token: String,
}

impl<'a> Buyer<'a> {
    async fn sign_up(test: &'a TestFleet, n: u32) -> Buyer<'a> {
        let client = pillivery_testkit::http_client();
        let base = &test.base;
        let email = format!("payments{n}@example.com");
        let (status, _, body) = send(client.post(format!("{base}/api/users")).json(&json!({
            "email": email,
            "password": "secret-pass1",
            "displayName": format!("payments{n}"),
            "realName": "김결제",
            "phone": format!("010-7777-{n:04}"),
            "city": "서울",
            "detailAddress": "강남구 1"
        })))
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, _, tokens) = send(
            client
                .post(format!("{base}/api/auth/login"))
                .json(&json!({"email": email, "password": "secret-pass1"})),
        )
        .await;
        assert_eq!(status, 200, "{tokens}");
        let token = tokens["accessToken"].as_str().unwrap().to_owned();
        Buyer {
            test,
            client,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.test.base)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, body) =
            send(self.client.get(self.url(path)).bearer_auth(&self.token)).await;
        (status, body)
    }

    async fn add_to_cart(&self, kind: &str, line: Value) {
        let (status, _, cart) = send(
            self.client
                .post(self.url(&format!("/api/carts/{kind}/items")))
                .bearer_auth(&self.token)
                .json(&line),
        )
        .await;
        assert_eq!(status, 200, "{cart}");
    }

    /// `POST /api/orders`: a new order in REQUEST.
    async fn checkout(&self, key: &str, lines: Value, from_cart: bool) -> Value {
        let (status, _, order) = send(
            self.client
                .post(self.url("/api/orders"))
                .bearer_auth(&self.token)
                .header("Idempotency-Key", key)
                .json(&json!({
                    "lines": lines,
                    "fromCart": from_cart,
                    "receiver": {"name": "김수령", "phone": "010-1234-5678", "city": "서울", "detailAddress": "강남구 1"}
                })),
        )
        .await;
        assert_eq!(status, 201, "{order}");
        assert_eq!(order["status"], "REQUEST");
        order
    }

    async fn ready(&self, order_id: i64, key: &str) -> (u16, Value) {
        let (status, _, body) = send(
            self.client
                .post(self.url(&format!("/api/payments/orders/{order_id}/ready")))
                .bearer_auth(&self.token)
                .header("Idempotency-Key", key)
                .json(&json!({})),
        )
        .await;
        (status, body)
    }

    /// The buyer's choice on the sandbox's page; answers where the page sends the browser (a
    /// gateway route).
    async fn choose(&self, ready: &Value, choice: &str) -> String {
        let page = ready["nextRedirectPcUrl"].as_str().expect("a page URL");
        let separator = if page.contains('?') { '&' } else { '?' };
        let (status, headers, _) =
            send(self.client.get(format!("{page}{separator}auto={choice}"))).await;
        assert_eq!(status, 302, "the sandbox page redirects");
        location(&headers)
    }

    /// Ready, approve on the page, follow to the gateway: the order is paid. Answers the
    /// ready's body.
    async fn pay(&self, order_id: i64, key: &str) -> Value {
        let (status, ready) = self.ready(order_id, key).await;
        assert_eq!(status, 200, "{ready}");
        let approve = self.choose(&ready, "approve").await;
        let (status, headers, _) = send(self.client.get(&approve)).await;
        assert_eq!(status, 302, "the approval redirects to the storefront");
        assert_eq!(
            location(&headers),
            format!("{SUCCESS_PAGE}?orderId={order_id}")
        );
        ready
    }

    async fn order_status(&self, order_id: i64) -> String {
        let (status, order) = self.get(&format!("/api/orders/{order_id}")).await;
        assert_eq!(status, 200, "{order}");
        order["status"].as_str().unwrap().to_owned()
    }

    async fn payment(&self, order_id: i64) -> Value {
        let (status, payment) = self.get(&format!("/api/payments/orders/{order_id}")).await;
        assert_eq!(status, 200, "{payment}");
        payment
    }

    /// An item's sales as the catalog shows them (public).
    async fn sales(&self, item_id: i64) -> i64 {
        let (status, _, item) =
            send(self.client.get(self.url(&format!("/api/items/{item_id}")))).await;
        assert_eq!(status, 200, "{item}");
        item["sales"].as_i64().unwrap_or(0)
    }
}

fn id(order: &Value) -> i64 {
    order["orderId"].as_i64().unwrap()
}

fn ledger_of(test: &TestFleet, order_id: i64) -> pillivery_sandbox_pg::Ledger {
    test.fleet.sandbox.ledger(&LedgerFilter {
        partner_order_id: Some(format!("order-{order_id}")),
        ..LedgerFilter::default()
    })
}

#[tokio::test]
async fn an_item_order_is_paid_through_the_sandbox() {
    let test = start_fleet().await;
    let buyer = Buyer::sign_up(&test, 1).await;
    buyer
        .add_to_cart("normal", json!({"itemId": 11, "quantity": 2}))
        .await;
    buyer
        .add_to_cart("normal", json!({"itemId": 12, "quantity": 1}))
        .await;
    let sold_before = buyer.sales(11).await;
    let order = buyer
        .checkout("pay-order-1", json!([{"itemId": 11, "quantity": 2}]), true)
        .await;
    let order_id = id(&order);
    let total = order["totalPrice"].as_i64().unwrap();

    // Ready: an Idempotency-Key is required; a repeat with the key answers the same payment.
    let (status, _, error) = send(
        buyer
            .client
            .post(buyer.url(&format!("/api/payments/orders/{order_id}/ready")))
            .bearer_auth(&buyer.token)
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    let (status, ready) = buyer.ready(order_id, "ready-1").await;
    assert_eq!(status, 200, "{ready}");
    let tid = ready["tid"].as_str().unwrap().to_owned();
    assert!(tid.starts_with('T'), "{ready}");
    assert!(ready["createdAt"].is_string(), "{ready}");
    let page = ready["nextRedirectPcUrl"].as_str().unwrap();
    assert!(
        page.starts_with(&test.fleet.sandbox_url) && !page.contains("/api/"),
        "{page}"
    );
    let (status, again) = buyer.ready(order_id, "ready-1").await;
    assert_eq!((status, &again), (200, &ready));
    // Someone else's order is not found, whatever the key.
    let stranger = Buyer::sign_up(&test, 2).await;
    let (status, error) = stranger.ready(order_id, "ready-x").await;
    assert_eq!((status, &error["code"]), (404, &json!("ORDER_NOT_FOUND")));

    // The buyer approves on the sandbox's page, which sends the browser to the gateway.
    let approve = buyer.choose(&ready, "approve").await;
    let prefix = format!(
        "{}/api/payments/orders/{order_id}/approve?pg_token=",
        test.base
    );
    assert!(approve.starts_with(&prefix), "{approve}");
    let (status, headers, _) = send(buyer.client.get(&approve)).await;
    assert_eq!(status, 302);
    assert_eq!(
        location(&headers),
        format!("{SUCCESS_PAGE}?orderId={order_id}")
    );
    // The same redirect asked for JSON (a reload by a script): the approved payment, once.
    let (status, _, answer) = send(
        buyer
            .client
            .get(&approve)
            .header(ACCEPT, "application/json"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["redirectUrl"],
        json!(format!("{SUCCESS_PAGE}?orderId={order_id}"))
    );
    assert_eq!(answer["payment"]["status"], "APPROVED");
    assert_eq!(answer["payment"]["tid"], json!(tid));
    assert_eq!(answer["payment"]["amount"], json!(total));

    assert_eq!(buyer.order_status(order_id).await, "PAID");
    let payment = buyer.payment(order_id).await;
    assert_eq!(payment["status"], "APPROVED", "{payment}");
    assert_eq!(
        (payment["orderId"].clone(), payment["amount"].clone()),
        (json!(order_id), json!(total))
    );
    assert!(payment["approvedAt"].is_string(), "{payment}");
    assert_eq!(payment["pg"]["status"], "SUCCESS_PAYMENT", "{payment}");
    let (status, error) = stranger
        .get(&format!("/api/payments/orders/{order_id}"))
        .await;
    assert_eq!((status, &error["code"]), (404, &json!("PAYMENT_NOT_FOUND")));
    let ledger = ledger_of(&test, order_id);
    assert_eq!((ledger.charges, ledger.charged_amount), (1, total));

    // Paid from the cart: exactly the ordered item left it.
    let (_, cart) = buyer.get("/api/carts/normal").await;
    let left: Vec<&Value> = cart["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| &line["itemId"])
        .collect();
    assert_eq!(left, [&json!(12)], "{cart}");
    // Paid: no second payment, whatever the key.
    let (status, error) = buyer.ready(order_id, "ready-2").await;
    assert_eq!(
        (status, &error["code"]),
        (422, &json!("INVALID_ORDER_STATE"))
    );
    // Sales are counted from the OrderPaid event.
    eventually("the catalog counts the sale", PATIENCE, || async {
        (buyer.sales(11).await == sold_before + 2).then_some(())
    })
    .await;
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancel_and_fail_end_the_attempt_and_the_order_stays_payable() {
    let test = start_fleet().await;
    let buyer = Buyer::sign_up(&test, 3).await;
    let order = buyer
        .checkout("abandon-1", json!([{"itemId": 13, "quantity": 1}]), false)
        .await;
    let order_id = id(&order);

    // The buyer cancels on the page: the attempt is CANCELED, the order still REQUEST.
    let (status, first) = buyer.ready(order_id, "abandon-ready-1").await;
    assert_eq!(status, 200, "{first}");
    let cancel = buyer.choose(&first, "cancel").await;
    assert_eq!(
        cancel,
        format!("{}/api/payments/orders/{order_id}/cancel", test.base)
    );
    let (status, headers, _) = send(buyer.client.get(&cancel)).await;
    assert_eq!(status, 302);
    assert_eq!(
        location(&headers),
        format!("{CANCEL_PAGE}?orderId={order_id}")
    );
    assert_eq!(buyer.payment(order_id).await["status"], "CANCELED");
    assert_eq!(buyer.order_status(order_id).await, "REQUEST");

    // A new ready is a new attempt with a new tid; this time the payment fails.
    let (status, second) = buyer.ready(order_id, "abandon-ready-2").await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["tid"], first["tid"]);
    let fail = buyer.choose(&second, "fail").await;
    assert_eq!(
        fail,
        format!("{}/api/payments/orders/{order_id}/fail", test.base)
    );
    let (status, _, answer) =
        send(buyer.client.get(&fail).header(ACCEPT, "application/json")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["redirectUrl"],
        json!(format!("{FAIL_PAGE}?orderId={order_id}"))
    );
    assert_eq!(answer["payment"]["status"], "FAILED");
    assert_eq!(buyer.order_status(order_id).await, "REQUEST");
    // A stray approval of the abandoned attempt changes nothing.
    let (status, _, error) = send(buyer.client.get(format!(
        "{}/api/payments/orders/{order_id}/approve?pg_token=stray",
        test.base
    )))
    .await;
    assert_eq!(
        (status, &error["code"]),
        (422, &json!("INVALID_PAYMENT_STATE"))
    );
    assert_eq!(ledger_of(&test, order_id).charges, 0);

    // The third attempt is approved.
    let third = buyer.pay(order_id, "abandon-ready-3").await;
    assert_ne!(third["tid"], second["tid"]);
    assert_eq!(buyer.order_status(order_id).await, "PAID");
    assert_eq!(buyer.payment(order_id).await["status"], "APPROVED");
    assert_eq!(ledger_of(&test, order_id).charges, 1);
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_subscription_order_starts_an_active_subscription_with_its_sid() {
    let test = start_fleet().await;
    let buyer = Buyer::sign_up(&test, 4).await;
    buyer
        .add_to_cart(
            "subscription",
            json!({"itemId": 21, "quantity": 1, "periodDays": 30}),
        )
        .await;
    let order = buyer
        .checkout(
            "subscribe-1",
            json!([{"itemId": 21, "quantity": 1, "periodDays": 30}]),
            true,
        )
        .await;
    let order_id = id(&order);
    let ready = buyer.pay(order_id, "subscribe-ready-1").await;
    assert_eq!(buyer.order_status(order_id).await, "PAID");

    let (status, subscriptions) = buyer.get("/api/subscriptions").await;
    assert_eq!(status, 200, "{subscriptions}");
    assert_eq!(subscriptions["pageInfo"]["totalElements"], json!(1));
    let subscription = &subscriptions["data"][0];
    assert_eq!(subscription["status"], "ACTIVE");
    assert_eq!(subscription["itemId"], json!(21));
    assert_eq!(subscription["periodDays"], json!(30));
    // Paid with the subscription CID: the PG issued a SID for the renewals.
    let tid = ready["tid"].as_str().unwrap();
    let sids = test
        .fleet
        .sandbox
        .subscriptions(&SubscriptionFilter::default());
    let sid = sids
        .iter()
        .find(|sid| sid.first_tid == tid)
        .unwrap_or_else(|| panic!("a SID issued by {tid}: {sids:?}"));
    assert_eq!(sid.status, SidStatus::Active);
    assert_eq!(sid.cid, "TCSUBSCRIP");
    let (_, cart) = buyer.get("/api/carts/subscription").await;
    assert_eq!(cart["lines"], json!([]));

    // The owner cancels the subscription: SubscriptionCanceled reaches the payment service,
    // which inactivates the SID (no other subscription uses it).
    let subscription_id = subscription["subscriptionId"].as_i64().unwrap();
    let (status, _, canceled) = send(
        buyer
            .client
            .post(buyer.url(&format!("/api/subscriptions/{subscription_id}/cancel")))
            .bearer_auth(&buyer.token),
    )
    .await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "CANCELED");
    let only = SubscriptionFilter {
        sid: Some(sid.sid.clone()),
        ..SubscriptionFilter::default()
    };
    eventually("the SID inactive at the PG", PATIENCE, || async {
        (test.fleet.sandbox.subscriptions(&only)[0].status == SidStatus::Inactive).then_some(())
    })
    .await;
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_paid_order_cancelled_by_its_owner_is_refunded() {
    let test = start_fleet().await;
    let buyer = Buyer::sign_up(&test, 5).await;
    let order = buyer
        .checkout("refund-1", json!([{"itemId": 14, "quantity": 3}]), false)
        .await;
    let order_id = id(&order);
    let total = order["totalPrice"].as_i64().unwrap();
    buyer.pay(order_id, "refund-ready-1").await;
    assert_eq!(buyer.order_status(order_id).await, "PAID");

    let (status, _, pending) = send(
        buyer
            .client
            .post(buyer.url(&format!("/api/orders/{order_id}/cancel")))
            .bearer_auth(&buyer.token)
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["status"], "REFUND_PENDING");
    // OrderRefundRequested → the payment service refunds at the PG → MarkOrderRefunded.
    eventually("the order refunded", PATIENCE, || async {
        (buyer.order_status(order_id).await == "REFUNDED").then_some(())
    })
    .await;
    let payment = buyer.payment(order_id).await;
    assert_eq!(payment["status"], "REFUNDED", "{payment}");
    assert!(payment["canceledAt"].is_string(), "{payment}");
    let ledger = ledger_of(&test, order_id);
    assert_eq!(
        (
            ledger.charges,
            ledger.cancels,
            ledger.canceled_amount,
            ledger.net_amount
        ),
        (1, 1, total, 0),
        "{ledger:?}"
    );
    test.fleet.shutdown().await.unwrap();
}
