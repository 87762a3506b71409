//! Subscriptions over real HTTP: the first approval issues a SID, charges with it are
//! idempotent on `partner_order_id`, and an inactive or unknown SID is declined.

mod support;

use pillivery_sandbox_pg::{SidStatus, SubscriptionFilter, SubscriptionRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

async fn subscriptions(harness: &Harness, query: &str) -> Vec<SubscriptionRecord> {
    let response = harness
        .client
        .get(format!("{}/sandbox/subscriptions{query}", harness.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    serde_json::from_value(body["subscriptions"].clone()).unwrap()
}

#[tokio::test]
async fn a_sid_charges_once_per_partner_order_id_until_it_is_inactivated() {
    let harness = spawn().await;
    let first = harness.pay(SUBSCRIPTION, "sub-1-first", 19_800).await;
    let sid = text(&first, "sid").to_owned();
    assert!(sid.starts_with('S') && sid.len() == 20, "{sid}");
    assert_eq!(first["cid"], SUBSCRIPTION);

    let records = subscriptions(&harness, "").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].sid, sid);
    assert_eq!(records[0].status, SidStatus::Active);
    assert_eq!(records[0].charges, 1);
    assert_eq!(records[0].first_tid, text(&first, "tid"));

    let (status, charge) = harness.charge(&sid, "sub-1-cycle-2", 19_800).await;
    assert_eq!(status, StatusCode::OK, "{charge}");
    assert_eq!(charge["sid"], sid.as_str());
    assert_eq!(charge["amount"]["total"], 19_800);
    assert_ne!(charge["tid"], first["tid"]);
    // The same partner_order_id again: the first result, no second charge.
    let (status, repeat) = harness.charge(&sid, "sub-1-cycle-2", 19_800).await;
    assert_eq!(status, StatusCode::OK, "{repeat}");
    assert_eq!(repeat, charge);
    let cycle = harness.ledger("?partner_order_id=sub-1-cycle-2").await;
    assert_eq!(cycle.charges, 1);
    assert_eq!(cycle.entries[0].aid, text(&charge, "aid"));
    assert_eq!(cycle.entries[0].sid.as_deref(), Some(sid.as_str()));
    // …and a repeat with another amount is refused rather than answered with the first.
    let (status, body) = harness.charge(&sid, "sub-1-cycle-2", 20_000).await;
    assert_eq!(error_code(status, &body), -2);

    let by_sid = harness.ledger(&format!("?sid={sid}")).await;
    assert_eq!(by_sid.charges, 2, "the first approval and one renewal");
    assert_eq!(by_sid.charged_amount, 39_600);

    let (status, inactive) = harness
        .kakao(
            "/online/v1/payment/manage/subscription/inactive",
            json!({"cid": SUBSCRIPTION, "sid": sid}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{inactive}");
    assert_eq!(inactive["status"], "INACTIVE");
    assert_eq!(inactive["sid"], sid.as_str());
    // Inactivating again answers the same state (the payment service retries it until it hears).
    let (status, again) = harness
        .kakao(
            "/online/v1/payment/manage/subscription/inactive",
            json!({"cid": SUBSCRIPTION, "sid": sid}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["inactivated_at"], inactive["inactivated_at"]);

    let (status, body) = harness.charge(&sid, "sub-1-cycle-3", 19_800).await;
    assert_eq!(error_code(status, &body), -782);
    assert_eq!(body["extras"]["method_result_code"], "INACTIVE_SID");
    // A charge made before the SID was inactivated is still answered as made.
    let (status, repeat) = harness.charge(&sid, "sub-1-cycle-2", 19_800).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repeat, charge);
    assert_eq!(harness.ledger(&format!("?sid={sid}")).await.charges, 2);

    let inactive_records = subscriptions(&harness, "?status=INACTIVE").await;
    assert_eq!(inactive_records.len(), 1);
    assert_eq!(inactive_records[0].charges, 2);
    assert!(inactive_records[0].inactivated_at.is_some());
    assert!(subscriptions(&harness, "?status=ACTIVE").await.is_empty());
    assert_eq!(
        harness.sandbox.subscriptions(&SubscriptionFilter {
            sid: Some(sid.clone()),
            ..SubscriptionFilter::default()
        }),
        inactive_records
    );
}

#[tokio::test]
async fn subscription_charges_need_a_known_sid_of_the_subscription_cid() {
    let harness = spawn().await;
    let (status, body) = harness
        .charge("S0000000000000000000", "sub-x-cycle-1", 1_000)
        .await;
    assert_eq!(error_code(status, &body), -782);
    assert_eq!(body["extras"]["method_result_code"], "INVALID_SID");

    let first = harness.pay(SUBSCRIPTION, "sub-2-first", 5_000).await;
    let sid = text(&first, "sid");
    let mut one_time = charge_body(sid, "sub-2-cycle-2", 5_000);
    one_time["cid"] = json!(ONE_TIME);
    let (status, body) = harness
        .kakao("/online/v1/payment/subscription", one_time)
        .await;
    assert_eq!(error_code(status, &body), -2);
    let mut stranger = charge_body(sid, "sub-2-cycle-2", 5_000);
    stranger["partner_user_id"] = json!("user-2");
    let (status, body) = harness
        .kakao("/online/v1/payment/subscription", stranger)
        .await;
    assert_eq!(error_code(status, &body), -2);
    let (status, body) = harness.charge(sid, "sub-2-cycle-2", 0).await;
    assert_eq!(error_code(status, &body), -2);
    let (status, body) = harness
        .kakao(
            "/online/v1/payment/manage/subscription/inactive",
            json!({"cid": SUBSCRIPTION, "sid": "S0000000000000000000"}),
        )
        .await;
    assert_eq!(error_code(status, &body), -2);
    assert_eq!(harness.ledger(&format!("?sid={sid}")).await.charges, 1);

    // A subscription charge can be refunded and looked up like any payment.
    let (status, charge) = harness.charge(sid, "sub-2-cycle-2", 5_000).await;
    assert_eq!(status, StatusCode::OK, "{charge}");
    let (status, lookup) = harness
        .kakao(
            "/online/v1/payment/order",
            json!({"cid": SUBSCRIPTION, "tid": charge["tid"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lookup["status"], "SUCCESS_PAYMENT");
    assert_eq!(lookup["sid"], sid);
    let (status, refund) = harness
        .kakao(
            "/online/v1/payment/cancel",
            json!({"cid": SUBSCRIPTION, "tid": charge["tid"], "cancel_amount": 5_000, "cancel_tax_free_amount": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refund}");
    assert_eq!(refund["status"], "CANCEL_PAYMENT");
    let ledger = harness.ledger("?partner_order_id=sub-2-cycle-2").await;
    assert_eq!(
        (ledger.charges, ledger.cancels, ledger.net_amount),
        (1, 1, 0)
    );
}
