//! One-time payments over real HTTP: ready, the buyer page and its `auto` hook, approve,
//! lookup, cancels, the secret key and input validation.

mod support;

use pillivery_sandbox_pg::{EntryKind, LedgerFilter, SandboxConfig};
use reqwest::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_payment_approved_on_the_buyer_page_is_charged_exactly_once() {
    let harness = spawn().await;
    let ready = harness.ready(ONE_TIME, "order-1", 25_800).await;
    let tid = text(&ready, "tid");
    assert!(tid.starts_with('T') && tid.len() == 20, "{tid}");
    let pc_url = text(&ready, "next_redirect_pc_url");
    assert_eq!(pc_url, format!("{}/checkout/{tid}", harness.base));
    assert!(!pc_url.contains("/api/"));
    assert_eq!(
        text(&ready, "next_redirect_mobile_url"),
        format!("{pc_url}/mobile")
    );
    assert_eq!(
        text(&ready, "next_redirect_app_url"),
        format!("{pc_url}/app")
    );
    assert_eq!(
        text(&ready, "created_at").len(),
        "2026-05-01T14:03:27".len()
    );

    let (status, location) = harness.visit(&format!("{pc_url}?auto=approve")).await;
    assert_eq!(status, StatusCode::FOUND);
    let location = location.unwrap();
    assert!(
        location.starts_with(&format!("{APPROVAL_URL}?pg_token=")),
        "{location}"
    );
    let pg_token = pg_token_of(&location);
    // The buyer reloading the page is sent to the same approval again.
    let (_, again) = harness.visit(&format!("{pc_url}?auto=approve")).await;
    assert_eq!(again.as_deref(), Some(location.as_str()));

    let (status, approval) = harness.approve(ONE_TIME, tid, "order-1", &pg_token).await;
    assert_eq!(status, StatusCode::OK, "{approval}");
    assert_eq!(approval["tid"], tid);
    assert_eq!(approval["cid"], ONE_TIME);
    assert_eq!(approval["partner_order_id"], "order-1");
    assert_eq!(approval["payment_method_type"], "MONEY");
    assert_eq!(approval["quantity"], 2);
    assert_eq!(
        approval["amount"],
        json!({"total": 25_800, "tax_free": 0, "vat": 2_345, "point": 0, "discount": 0, "green_deposit": 0})
    );
    assert!(
        approval.get("sid").is_none(),
        "a one-time payment has no SID"
    );
    let aid = text(&approval, "aid");
    assert!(aid.starts_with('A'));

    let ledger = harness.ledger("").await;
    assert_eq!(ledger.charges, 1);
    assert_eq!(ledger.cancels, 0);
    assert_eq!(ledger.charged_amount, 25_800);
    let entry = &ledger.entries[0];
    assert_eq!(entry.kind, EntryKind::Charge);
    assert_eq!((entry.tid.as_str(), entry.aid.as_str()), (tid, aid));
    assert_eq!(entry.partner_order_id, "order-1");

    // A second approve is KakaoPay's -702, and charges nothing.
    let (status, body) = harness.approve(ONE_TIME, tid, "order-1", &pg_token).await;
    assert_eq!(error_code(status, &body), -702);
    assert_eq!(harness.ledger("").await.charges, 1);

    let (status, lookup) = harness
        .kakao(
            "/online/v1/payment/order",
            json!({"cid": ONE_TIME, "tid": tid}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lookup}");
    assert_eq!(lookup["status"], "SUCCESS_PAYMENT");
    assert_eq!(lookup["amount"]["total"], 25_800);
    assert_eq!(lookup["cancel_available_amount"]["total"], 25_800);
    assert_eq!(
        lookup["payment_action_details"][0]["payment_action_type"],
        "PAYMENT"
    );
    assert_eq!(lookup["approved_at"], approval["approved_at"]);

    // The in-process handle sees the same ledger.
    assert_eq!(harness.sandbox.ledger(&LedgerFilter::default()), ledger);
    // A misspelt filter is refused rather than ignored (it would list everything).
    let response = harness
        .client
        .get(format!(
            "{}/sandbox/ledger?partner_order=order-1",
            harness.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_pg_token_is_appended_to_an_approval_url_with_a_query_and_every_page_works() {
    let harness = spawn().await;
    let approval_url = "http://shop.test/approve?orderId=7";
    let ready = harness
        .ready_with(ONE_TIME, "order-q", 1_000, approval_url)
        .await;
    let mobile = text(&ready, "next_redirect_mobile_url");
    let (status, location) = harness.visit(&format!("{mobile}?auto=approve")).await;
    assert_eq!(status, StatusCode::FOUND);
    let location = location.unwrap();
    assert!(
        location.starts_with("http://shop.test/approve?orderId=7&pg_token="),
        "{location}"
    );
    pg_token_of(&location);

    // `&auto=` appended literally to the query-less URL works too.
    let other = harness.ready(ONE_TIME, "order-amp", 1_000).await;
    let (status, location) = harness
        .visit(&format!(
            "{}&auto=cancel",
            text(&other, "next_redirect_pc_url")
        ))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location.as_deref(), Some(CANCEL_URL));
    let third = harness.ready(ONE_TIME, "order-app", 1_000).await;
    let (status, location) = harness
        .visit(&format!(
            "{}?auto=fail",
            text(&third, "next_redirect_app_url")
        ))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location.as_deref(), Some(FAIL_URL));
}

#[tokio::test]
async fn the_buyer_page_offers_three_choices_and_refuses_what_it_cannot_do() {
    let harness = spawn().await;
    let ready = harness.ready(ONE_TIME, "order-page", 9_900).await;
    let pc_url = text(&ready, "next_redirect_pc_url");
    let page = harness.client.get(pc_url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for choice in ["approve", "cancel", "fail"] {
        assert!(html.contains(&format!("value=\"{choice}\"")), "{choice}");
    }
    assert!(html.contains("9900 KRW"));

    let (status, _) = harness.visit(&format!("{pc_url}?auto=maybe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = harness
        .visit(&format!(
            "{}/checkout/T0000000000000000000?auto=approve",
            harness.base
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = harness.visit(&format!("{pc_url}/tablet")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancel_and_fail_on_the_page_redirect_and_charge_nothing() {
    let harness = spawn().await;
    let canceled = harness.ready(ONE_TIME, "order-c", 5_000).await;
    let pc_url = text(&canceled, "next_redirect_pc_url");
    let (status, location) = harness.visit(&format!("{pc_url}?auto=cancel")).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location.as_deref(), Some(CANCEL_URL));
    // Changing one's mind after canceling is refused; the payment is over.
    let (status, _) = harness.visit(&format!("{pc_url}?auto=approve")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = harness
        .approve(
            ONE_TIME,
            text(&canceled, "tid"),
            "order-c",
            "xxxxxxxxxxxxxxxxxxxx",
        )
        .await;
    assert_eq!(error_code(status, &body), -704);
    let (_, lookup) = harness
        .kakao(
            "/online/v1/payment/order",
            json!({"cid": ONE_TIME, "tid": text(&canceled, "tid")}),
        )
        .await;
    assert_eq!(lookup["status"], "QUIT_PAYMENT");

    let failed = harness.ready(ONE_TIME, "order-f", 5_000).await;
    let (status, location) = harness
        .visit(&format!(
            "{}?auto=fail",
            text(&failed, "next_redirect_pc_url")
        ))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location.as_deref(), Some(FAIL_URL));
    let (_, lookup) = harness
        .kakao(
            "/online/v1/payment/order",
            json!({"cid": ONE_TIME, "tid": text(&failed, "tid")}),
        )
        .await;
    assert_eq!(lookup["status"], "FAIL_PAYMENT");

    // After a cancel, a new ready for the same order starts a new payment the buyer can pay.
    let retry = harness.ready(ONE_TIME, "order-c", 5_000).await;
    assert_ne!(retry["tid"], canceled["tid"]);
    assert_eq!(harness.ledger("").await.charges, 0);
}

#[tokio::test]
async fn approve_needs_the_buyers_approval_and_its_pg_token() {
    let harness = spawn().await;
    let ready = harness.ready(ONE_TIME, "order-t", 3_000).await;
    let tid = text(&ready, "tid");
    let (status, body) = harness
        .approve(ONE_TIME, tid, "order-t", "AAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_eq!(error_code(status, &body), -701, "before the buyer approved");
    let pg_token = harness.buyer_approves(&ready).await;
    let (status, body) = harness
        .approve(ONE_TIME, tid, "order-t", "AAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_eq!(error_code(status, &body), -703, "a wrong pg_token");
    let (status, body) = harness.approve(ONE_TIME, tid, "order-x", &pg_token).await;
    assert_eq!(error_code(status, &body), -2, "another order's id");
    let (status, body) = harness.approve(ONE_TIME, tid, "order-t", "").await;
    assert_eq!(error_code(status, &body), -2, "no pg_token");
    let (status, body) = harness
        .approve(SUBSCRIPTION, tid, "order-t", &pg_token)
        .await;
    assert_eq!(error_code(status, &body), -721, "the tid under another cid");
    assert_eq!(harness.ledger("").await.charges, 0);
    let (status, body) = harness.approve(ONE_TIME, tid, "order-t", &pg_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(harness.ledger("").await.charges, 1);
}

#[tokio::test]
async fn a_repeated_ready_answers_the_first_tid() {
    let harness = spawn().await;
    let first = harness.ready(ONE_TIME, "order-r", 4_000).await;
    let second = harness.ready(ONE_TIME, "order-r", 4_000).await;
    assert_eq!(first, second);
    let (status, body) = harness
        .kakao(
            "/online/v1/payment/ready",
            ready_body(ONE_TIME, "order-r", 4_500, APPROVAL_URL),
        )
        .await;
    assert_eq!(error_code(status, &body), -2, "same id, another amount");
    // Once paid, a repeat still answers the paid tid: a second tid could be paid twice.
    let pg_token = harness.buyer_approves(&first).await;
    let (status, _) = harness
        .approve(ONE_TIME, text(&first, "tid"), "order-r", &pg_token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let third = harness.ready(ONE_TIME, "order-r", 4_000).await;
    assert_eq!(third["tid"], first["tid"]);
}

#[tokio::test]
async fn the_secret_key_is_checked_on_every_kakaopay_endpoint() {
    let mut config = SandboxConfig::loopback();
    config.secret_keys = "old-key,new-key".into();
    let harness = spawn_with(config).await;
    let body = ready_body(ONE_TIME, "order-k", 1_000, APPROVAL_URL);
    for authorization in [
        None,
        Some("SECRET_KEY wrong"),
        Some("Bearer new-key"),
        Some("new-key"),
    ] {
        let mut request = harness
            .client
            .post(format!("{}/online/v1/payment/ready", harness.base))
            .json(&body);
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error_code(status, &answer), -401);
    }
    for key in ["old-key", "new-key"] {
        let response = harness
            .client
            .post(format!("{}/online/v1/payment/ready", harness.base))
            .header("Authorization", format!("SECRET_KEY {key}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{key}");
    }
    for path in [
        "/online/v1/payment/approve",
        "/online/v1/payment/subscription",
        "/online/v1/payment/cancel",
        "/online/v1/payment/manage/subscription/inactive",
        "/online/v1/payment/order",
    ] {
        let response = harness
            .client
            .post(format!("{}{path}", harness.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn invalid_requests_get_kakaopay_shaped_400s() {
    let harness = spawn().await;
    let valid = ready_body(ONE_TIME, "order-v", 1_000, APPROVAL_URL);
    let with = |field: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("partner_user_id");
    let cases = [
        ("zero amount", with("total_amount", json!(0))),
        ("negative amount", with("total_amount", json!(-100))),
        ("amount as text", with("total_amount", json!("1000"))),
        (
            "tax-free above total",
            with("tax_free_amount", json!(1_001)),
        ),
        ("no quantity", with("quantity", json!(0))),
        ("empty item", with("item_name", json!(""))),
        ("unknown cid", with("cid", json!("TCUNKNOWN"))),
        (
            "not a URL",
            with("approval_url", json!("shop.test/approve")),
        ),
        ("missing field", missing),
    ];
    for (case, body) in cases {
        let (status, answer) = harness.kakao("/online/v1/payment/ready", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {answer}");
        assert_eq!(error_code(status, &answer), -2, "{case}");
    }
    let response = harness
        .client
        .post(format!("{}/online/v1/payment/ready", harness.base))
        .header(
            "Authorization",
            format!("SECRET_KEY {}", pillivery_sandbox_pg::DEFAULT_SECRET_KEY),
        )
        .body("cid=TC0ONETIME")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(status, &answer), -2, "not JSON");
    assert_eq!(harness.ledger("").await.entries.len(), 0);
}

#[tokio::test]
async fn cancels_refund_in_parts_up_to_the_paid_amount() {
    let harness = spawn().await;
    let approval = harness.pay(ONE_TIME, "order-refund", 10_000).await;
    let tid = text(&approval, "tid");
    let cancel = |amount: i64| {
        harness.kakao(
            "/online/v1/payment/cancel",
            json!({"cid": ONE_TIME, "tid": tid, "cancel_amount": amount, "cancel_tax_free_amount": 0}),
        )
    };
    let (status, part) = cancel(3_000).await;
    assert_eq!(status, StatusCode::OK, "{part}");
    assert_eq!(part["status"], "PART_CANCEL_PAYMENT");
    assert_eq!(part["approved_cancel_amount"]["total"], 3_000);
    assert_eq!(part["cancel_available_amount"]["total"], 7_000);
    assert_ne!(part["aid"], approval["aid"]);

    let (status, body) = cancel(7_001).await;
    assert_eq!(error_code(status, &body), -8, "over-cancel");
    let (status, body) = cancel(0).await;
    assert_eq!(error_code(status, &body), -2);

    let (status, rest) = cancel(7_000).await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(rest["status"], "CANCEL_PAYMENT");
    assert_eq!(rest["canceled_amount"]["total"], 10_000);
    assert_eq!(rest["canceled_amount"]["vat"], approval["amount"]["vat"]);
    assert_eq!(rest["cancel_available_amount"]["total"], 0);
    let (status, body) = cancel(1).await;
    assert_eq!(error_code(status, &body), -8, "nothing left");

    let ledger = harness.ledger("?partner_order_id=order-refund").await;
    assert_eq!((ledger.charges, ledger.cancels), (1, 2));
    assert_eq!(ledger.canceled_amount, 10_000);
    assert_eq!(ledger.net_amount, 0);
    let cancels = harness.ledger("?kind=cancel").await;
    assert_eq!(
        cancels.entries.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![3_000, 7_000]
    );

    let (_, lookup) = harness
        .kakao(
            "/online/v1/payment/order",
            json!({"cid": ONE_TIME, "tid": tid}),
        )
        .await;
    assert_eq!(lookup["status"], "CANCEL_PAYMENT");
    let actions: Vec<&str> = lookup["payment_action_details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|action| action["payment_action_type"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["PAYMENT", "CANCEL", "CANCEL"]);

    // Nothing to refund on a payment never approved, or one that does not exist.
    let pending = harness.ready(ONE_TIME, "order-unpaid", 1_000).await;
    let (status, body) = harness
        .kakao(
            "/online/v1/payment/cancel",
            json!({"cid": ONE_TIME, "tid": text(&pending, "tid"), "cancel_amount": 1_000, "cancel_tax_free_amount": 0}),
        )
        .await;
    assert_eq!(error_code(status, &body), -730);
    let (status, body) = harness
        .kakao(
            "/online/v1/payment/cancel",
            json!({"cid": ONE_TIME, "tid": "T0000000000000000000", "cancel_amount": 1, "cancel_tax_free_amount": 0}),
        )
        .await;
    assert_eq!(error_code(status, &body), -721);
    let (status, body) = harness
        .kakao(
            "/online/v1/payment/order",
            json!({"cid": ONE_TIME, "tid": "T0000000000000000000"}),
        )
        .await;
    assert_eq!(error_code(status, &body), -721);
}

#[tokio::test]
async fn a_public_url_sets_the_origin_of_the_buyer_page() {
    let mut config = SandboxConfig::loopback();
    config.public_url = Some("https://pay.pillivery.test/".into());
    let harness = spawn_with(config).await;
    assert_eq!(harness.public, "https://pay.pillivery.test");
    let ready = harness.ready(ONE_TIME, "order-public", 1_000).await;
    let tid = text(&ready, "tid");
    assert_eq!(
        text(&ready, "next_redirect_pc_url"),
        format!("https://pay.pillivery.test/checkout/{tid}")
    );
    // The page itself is served on the bound address whatever the public origin.
    let (status, location) = harness
        .visit(&format!("{}/checkout/{tid}?auto=approve", harness.base))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    pg_token_of(&location.unwrap());
}
