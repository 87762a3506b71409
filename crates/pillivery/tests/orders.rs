//! Carts, checkout, orders and subscriptions through the gateway's REST API, with the real
//! user, catalog and order services. Paying needs the payment service; the paid-state tests
//! mark orders paid the way it will, over gRPC on the order service's own port
//! (`OrderInternalService.MarkOrderPaid`).

mod common;

use common::{TestFleet, send, start_fleet};
use pillivery_proto::order as pb;
use pillivery_proto::order::order_internal_service_client::OrderInternalServiceClient;
use pillivery_testkit::reqwest::Client;
use serde_json::{Value, json};

/// Signs up user `n` and logs in; answers the access token.
async fn user(test: &TestFleet, client: &Client, n: u32) -> String {
    common::signed_up_user(test, client, "orders", &format!("orders{n}"), "5555", n).await
}

fn receiver() -> Value {
    json!({"name": "김수령", "phone": "010-1234-5678", "city": "서울", "detailAddress": "강남구 1"})
}

fn fields(body: &Value) -> Vec<String> {
    body["fieldErrors"]
        .as_array()
        .unwrap_or_else(|| panic!("fieldErrors in {body}"))
        .iter()
        .map(|error| error["field"].as_str().unwrap().to_owned())
        .collect()
}

/// An item's unit prices as the catalog shows them: (origin, discount, real).
async fn prices(test: &TestFleet, client: &Client, item_id: i64) -> (i64, i64, i64) {
    let (status, item) = send(client.get(format!("{}/api/items/{item_id}", test.base))).await;
    assert_eq!(status, 200, "{item}");
    (
        item["originPrice"].as_i64().unwrap(),
        item["discountPrice"].as_i64().unwrap(),
        item["realPrice"].as_i64().unwrap(),
    )
}

async fn mark_paid(test: &TestFleet, order: &Value, payment_id: &str) -> pb::Order {
    let address = test.fleet.service("order").unwrap().grpc_addr;
    let mut internal = OrderInternalServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    internal
        .mark_order_paid(pb::MarkOrderPaidRequest {
            order_id: order["orderId"].as_i64().unwrap(),
            payment_id: payment_id.into(),
            amount: order["totalPrice"].as_i64().unwrap(),
            paid_at: None,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn carts_price_live_and_keep_their_rules() {
    let test = start_fleet().await;
    let client = pillivery_testkit::http_client();
    let base = &test.base;
    let token = user(&test, &client, 1).await;

    let (status, cart) = send(
        client
            .get(format!("{base}/api/carts/normal"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(
        cart,
        json!({"lines": [], "totalQuantity": 0, "totalOriginPrice": 0, "totalDiscountPrice": 0, "totalPrice": 0})
    );
    let (status, _) = send(client.get(format!("{base}/api/carts/normal"))).await;
    assert_eq!(status, 401);

    let add = |item_id: i64, quantity: i32| {
        client
            .post(format!("{base}/api/carts/normal/items"))
            .bearer_auth(&token)
            .json(&json!({"itemId": item_id, "quantity": quantity}))
    };
    let (status, _) = send(add(1, 2)).await;
    assert_eq!(status, 200);
    let (status, cart) = send(add(1, 1)).await;
    assert_eq!(status, 200, "adding answers the cart: {cart}");
    assert_eq!(cart["lines"][0]["quantity"], json!(3));
    let (_, cart) = send(add(2, 1)).await;
    let (origin1, discount1, real1) = prices(&test, &client, 1).await;
    let (origin2, discount2, real2) = prices(&test, &client, 2).await;
    assert_eq!(cart["lines"][0]["lineTotal"], json!(3 * real1));
    assert_eq!(cart["lines"][0]["periodDays"], Value::Null);
    assert_eq!(cart["totalQuantity"], json!(4));
    assert_eq!(cart["totalOriginPrice"], json!(3 * origin1 + origin2));
    assert_eq!(cart["totalDiscountPrice"], json!(3 * discount1 + discount2));
    assert_eq!(
        cart["totalPrice"],
        json!(3 * real1 + real2),
        "the discount is subtracted once"
    );

    // Rules, as field errors and stable codes.
    let (status, body) = send(
        client
            .post(format!("{base}/api/carts/normal/items"))
            .bearer_auth(&token)
            .json(&json!({"itemId": 1, "quantity": 100, "periodDays": 30})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["quantity", "periodDays"]);
    let (status, body) = send(
        client
            .post(format!("{base}/api/carts/subscription/items"))
            .bearer_auth(&token)
            .json(&json!({"itemId": 1, "quantity": 1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["periodDays"]);
    let (status, body) = send(
        client
            .patch(format!("{base}/api/carts/weekly/items/1"))
            .bearer_auth(&token)
            .json(&json!({"quantity": 1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["kind"]);
    let (status, body) = send(add(987_654, 1)).await;
    assert_eq!((status, &body["code"]), (404, &json!("ITEM_NOT_FOUND")));
    let (status, body) = send(
        client
            .patch(format!("{base}/api/carts/normal/items/3"))
            .bearer_auth(&token)
            .json(&json!({"quantity": 2})),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("CART_LINE_NOT_FOUND"))
    );
    let (status, cart) = send(
        client
            .patch(format!("{base}/api/carts/normal/items/2"))
            .bearer_auth(&token)
            .json(&json!({"quantity": 5})),
    )
    .await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(cart["lines"][1]["quantity"], json!(5));
    let (status, body) = send(
        client
            .delete(format!("{base}/api/carts/normal/items/2"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = send(
        client
            .delete(format!("{base}/api/carts/normal/items/2"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("CART_LINE_NOT_FOUND"))
    );

    // The subscription cart keeps periods.
    let (status, cart) = send(
        client
            .post(format!("{base}/api/carts/subscription/items"))
            .bearer_auth(&token)
            .json(&json!({"itemId": 3, "quantity": 2, "periodDays": 30})),
    )
    .await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(cart["lines"][0]["periodDays"], json!(30));

    // Another user's carts are theirs.
    let other = user(&test, &client, 2).await;
    let (_, cart) = send(
        client
            .get(format!("{base}/api/carts/normal"))
            .bearer_auth(&other),
    )
    .await;
    assert_eq!(cart["lines"], json!([]));
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn checkout_is_idempotent_and_orders_are_private() {
    let test = start_fleet().await;
    let client = pillivery_testkit::http_client();
    let base = &test.base;
    let token = user(&test, &client, 3).await;
    let body =
        json!({"lines": [{"itemId": 1, "quantity": 2}], "fromCart": false, "receiver": receiver()});
    let checkout = |key: Option<&str>, body: &Value| {
        let request = client
            .post(format!("{base}/api/orders"))
            .bearer_auth(&token)
            .json(body);
        match key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        }
    };

    let (status, error) = send(checkout(None, &body)).await;
    assert_eq!(status, 400, "{error}");
    let (status, order) = send(checkout(Some("order-1"), &body)).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], json!("REQUEST"));
    assert_eq!(order["subscriptionId"], Value::Null);
    assert_eq!(order["cycle"], Value::Null);
    assert_eq!(order["lines"][0]["periodDays"], Value::Null);
    assert_eq!(order["statusHistory"][0]["status"], json!("REQUEST"));
    let (_, _, real) = prices(&test, &client, 1).await;
    assert_eq!(order["totalPrice"], json!(2 * real));
    let (status, replay) = send(checkout(Some("order-1"), &body)).await;
    assert_eq!(status, 201);
    assert_eq!(
        replay, order,
        "the same key and body replay the first answer"
    );
    let other_body =
        json!({"lines": [{"itemId": 1, "quantity": 3}], "fromCart": false, "receiver": receiver()});
    let (status, error) = send(checkout(Some("order-1"), &other_body)).await;
    assert_eq!(
        (status, &error["code"]),
        (409, &json!("IDEMPOTENCY_KEY_REUSED"))
    );

    // Concurrent duplicates: one order.
    let duplicates = (0..6).map(|_| send(checkout(Some("order-2"), &other_body)));
    let answers = futures::future::join_all(duplicates).await;
    let ids: Vec<&Value> = answers
        .iter()
        .map(|(status, order)| {
            assert_eq!(*status, 201, "{order}");
            &order["orderId"]
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let (status, page) = send(client.get(format!("{base}/api/orders")).bearer_auth(&token)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["pageInfo"],
        json!({"page": 1, "size": 20, "totalElements": 2, "totalPages": 1})
    );
    assert_eq!(page["data"][0]["orderId"], *ids[0], "newest first");

    // Validation: every path at once, as the client sent it.
    let (status, error) = send(checkout(
        Some("order-3"),
        &json!({
            "lines": [{"itemId": 1, "quantity": 0}, {"itemId": 2, "quantity": 1, "periodDays": 7}],
            "fromCart": false,
            "receiver": {"name": "김수령", "phone": "02-123", "city": " ", "detailAddress": "1"}
        }),
    ))
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        fields(&error),
        [
            "lines[0].quantity",
            "lines[1].periodDays",
            "receiver.city",
            "receiver.phone"
        ]
    );
    let (status, error) = send(
        client
            .get(format!("{base}/api/orders?size=0"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(fields(&error), ["size"]);
    let (status, _) = send(
        client
            .get(format!("{base}/api/orders?status=LOST"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 400);
    let (status, page) = send(
        client
            .get(format!("{base}/api/orders?status=CANCELED"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]));

    // Ownership: someone else's order does not exist for them.
    let stranger = user(&test, &client, 4).await;
    let order_id = order["orderId"].as_i64().unwrap();
    let (status, error) = send(
        client
            .get(format!("{base}/api/orders/{order_id}"))
            .bearer_auth(&stranger),
    )
    .await;
    assert_eq!((status, &error["code"]), (404, &json!("ORDER_NOT_FOUND")));
    let (status, error) = send(
        client
            .post(format!("{base}/api/orders/{order_id}/cancel"))
            .bearer_auth(&stranger),
    )
    .await;
    assert_eq!((status, &error["code"]), (404, &json!("ORDER_NOT_FOUND")));
    let (status, mine) = send(
        client
            .get(format!("{base}/api/orders/{order_id}"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(mine["orderId"], json!(order_id));
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn transitions_are_guarded_and_subscriptions_follow_payment() {
    let test = start_fleet().await;
    let client = pillivery_testkit::http_client();
    let base = &test.base;
    let token = user(&test, &client, 5).await;
    let checkout = |key: &str, lines: Value, from_cart: bool| {
        client
            .post(format!("{base}/api/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({"lines": lines, "fromCart": from_cart, "receiver": receiver()}))
    };
    let cancel = |order: &Value| {
        client
            .post(format!("{base}/api/orders/{}/cancel", order["orderId"]))
            .bearer_auth(&token)
            .json(&json!({}))
    };

    // REQUEST → CANCELED, and nothing after.
    let (_, unpaid) = send(checkout(
        "t-1",
        json!([{"itemId": 4, "quantity": 1}]),
        false,
    ))
    .await;
    let (status, canceled) = send(cancel(&unpaid)).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], json!("CANCELED"));
    let (status, error) = send(cancel(&unpaid)).await;
    assert_eq!(
        (status, &error["code"]),
        (422, &json!("INVALID_ORDER_STATE"))
    );

    // Paid from the carts: the ordered items leave them, one subscription per subscription line.
    for (kind, body) in [
        ("normal", json!({"itemId": 5, "quantity": 1})),
        ("normal", json!({"itemId": 6, "quantity": 1})),
        (
            "subscription",
            json!({"itemId": 7, "quantity": 2, "periodDays": 30}),
        ),
    ] {
        let (status, _) = send(
            client
                .post(format!("{base}/api/carts/{kind}/items"))
                .bearer_auth(&token)
                .json(&body),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, order) = send(checkout(
        "t-2",
        json!([{"itemId": 5, "quantity": 1}, {"itemId": 7, "quantity": 2, "periodDays": 30}]),
        true,
    ))
    .await;
    assert_eq!(status, 201, "{order}");
    let paid = mark_paid(&test, &order, "tid-t2").await;
    assert_eq!(paid.status, pb::OrderStatus::Paid as i32);
    let (_, normal) = send(
        client
            .get(format!("{base}/api/carts/normal"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(normal["lines"].as_array().unwrap().len(), 1);
    assert_eq!(normal["lines"][0]["itemId"], json!(6));
    let (_, subscription_cart) = send(
        client
            .get(format!("{base}/api/carts/subscription"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(subscription_cart["lines"], json!([]));
    let (status, subscriptions) = send(
        client
            .get(format!("{base}/api/subscriptions"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200, "{subscriptions}");
    assert_eq!(subscriptions["pageInfo"]["totalElements"], json!(1));
    let subscription = &subscriptions["data"][0];
    assert_eq!(subscription["status"], json!("ACTIVE"));
    assert_eq!(
        (
            subscription["itemId"].clone(),
            subscription["cycle"].clone()
        ),
        (json!(7), json!(0))
    );
    assert_eq!(subscription["anchorDate"], subscription["lastBilledDate"]);

    // PAID → REFUND_PENDING, then 422.
    let (status, pending) = send(cancel(&order)).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["status"], json!("REFUND_PENDING"));
    let (status, error) = send(cancel(&order)).await;
    assert_eq!(
        (status, &error["code"]),
        (422, &json!("INVALID_ORDER_STATE"))
    );

    // The subscription: changed by its owner only, cancelled once.
    let id = subscription["subscriptionId"].as_i64().unwrap();
    let (status, changed) = send(
        client
            .patch(format!("{base}/api/subscriptions/{id}"))
            .bearer_auth(&token)
            .json(&json!({"periodDays": 60})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["periodDays"], json!(60));
    assert_ne!(changed["nextBillingDate"], subscription["nextBillingDate"]);
    let (status, error) = send(
        client
            .patch(format!("{base}/api/subscriptions/{id}"))
            .bearer_auth(&token)
            .json(&json!({"periodDays": 10})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(fields(&error), ["periodDays"]);
    let stranger = user(&test, &client, 6).await;
    let (status, error) = send(
        client
            .get(format!("{base}/api/subscriptions/{id}"))
            .bearer_auth(&stranger),
    )
    .await;
    assert_eq!(
        (status, &error["code"]),
        (404, &json!("SUBSCRIPTION_NOT_FOUND"))
    );
    let stop = || {
        client
            .post(format!("{base}/api/subscriptions/{id}/cancel"))
            .bearer_auth(&token)
    };
    let (status, stopped) = send(stop()).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["status"], json!("CANCELED"));
    let (status, error) = send(stop()).await;
    assert_eq!(
        (status, &error["code"]),
        (422, &json!("INVALID_SUBSCRIPTION_STATE"))
    );
    test.fleet.shutdown().await.unwrap();
}
