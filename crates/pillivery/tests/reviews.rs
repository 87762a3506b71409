//! Reviews through the gateway's REST API with the whole embedded fleet: the real user service
//! gives the author's name, the real order service says who bought what. An order becomes PAID
//! the way the payment service makes it so, over gRPC on the order service's own port
//! (`OrderInternalService.MarkOrderPaid`).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{TestFleet, send, start_fleet};
use pillivery_proto::order as pb;
use pillivery_proto::order::order_internal_service_client::OrderInternalServiceClient;
use pillivery_testkit::reqwest::Client;
use serde_json::json;

/// Signs up user `n` (display name `리뷰어{n}`) and logs in; answers the access token.
async fn user(test: &TestFleet, client: &Client, n: u32) -> String {
    common::signed_up_user(test, client, "reviews", &format!("리뷰어{n}"), "7777", n).await
}

/// Makes every checkout's idempotency key a new one.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// An order of `item_id` by the token's user; PAID when `paid`. Answers its id.
async fn order(test: &TestFleet, client: &Client, token: &str, item_id: i64, paid: bool) -> i64 {
    let (status, order) = send(
        client
            .post(format!("{}/api/orders", test.base))
            .bearer_auth(token)
            .header("Idempotency-Key", format!("review-order-{}", NEXT_KEY.fetch_add(1, Ordering::SeqCst)))
            .json(&json!({
                "lines": [{"itemId": item_id, "quantity": 1}],
                "fromCart": false,
                "receiver": {"name": "김수령", "phone": "010-1234-5678", "city": "서울", "detailAddress": "강남구 1"}
            })),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["orderId"].as_i64().unwrap();
    if paid {
        let address = test.fleet.service("order").unwrap().grpc_addr;
        let mut internal = OrderInternalServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        internal
            .mark_order_paid(pb::MarkOrderPaidRequest {
                order_id,
                payment_id: format!("tid-{order_id}"),
                amount: order["totalPrice"].as_i64().unwrap(),
                paid_at: None,
            })
            .await
            .unwrap();
    }
    order_id
}

#[tokio::test]
async fn buyers_review_through_the_gateway() {
    let test = start_fleet().await;
    let client = pillivery_testkit::http_client();
    let base = &test.base;
    let buyer = user(&test, &client, 1).await;
    let other = user(&test, &client, 2).await;
    let item_id = 3;
    let paid = order(&test, &client, &buyer, item_id, true).await;
    let unpaid = order(&test, &client, &buyer, item_id, false).await;
    let review = |token: &str, order_id: i64, star: i64, content: &str| {
        client
            .post(format!("{base}/api/items/{item_id}/reviews"))
            .bearer_auth(token)
            .json(&json!({"orderId": order_id, "star": star, "content": content}))
    };

    // Not bought (an unpaid order, someone else's order), then invalid, then anonymous.
    let (status, body) = send(review(&buyer, unpaid, 5, "아직 결제 전")).await;
    assert_eq!(
        (status, &body["code"]),
        (422, &json!("NOT_PURCHASED")),
        "{body}"
    );
    let (status, body) = send(review(&other, paid, 5, "남의 주문")).await;
    assert_eq!(
        (status, &body["code"]),
        (422, &json!("NOT_PURCHASED")),
        "{body}"
    );
    let (status, body) = send(review(&buyer, paid, 6, " ")).await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["star", "content"]);
    let (status, _) = send(
        client
            .post(format!("{base}/api/items/{item_id}/reviews"))
            .json(&json!({"orderId": paid, "star": 5, "content": "익명"})),
    )
    .await;
    assert_eq!(status, 401);

    // The buyer: 201 with the name the user service holds, every field present.
    let (status, created) = send(review(&buyer, paid, 4, "  잘 먹고 있어요 ")).await;
    assert_eq!(status, 201, "{created}");
    let review_id = created["reviewId"].as_i64().unwrap();
    assert_eq!(created["itemId"], json!(item_id));
    assert_eq!(created["orderId"], json!(paid));
    assert_eq!(created["displayName"], json!("리뷰어1"));
    assert_eq!(created["star"], json!(4));
    assert_eq!(created["content"], json!("잘 먹고 있어요"));
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));
    let (status, body) = send(review(&buyer, paid, 5, "또 씀")).await;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("ALREADY_REVIEWED")),
        "{body}"
    );

    // Public reads, and the item's counters.
    let (status, page) = send(client.get(format!(
        "{base}/api/items/{item_id}/reviews?sort=STAR_H&size=5"
    )))
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["reviewId"], json!(review_id));
    assert_eq!(
        page["pageInfo"],
        json!({"page": 1, "size": 5, "totalElements": 1, "totalPages": 1})
    );
    let (status, body) =
        send(client.get(format!("{base}/api/items/{item_id}/reviews?sort=BEST"))).await;
    assert_eq!(status, 400, "{body}");
    let (status, item) = send(client.get(format!("{base}/api/items/{item_id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&item["starAvg"], &item["reviewCount"]),
        (&json!(4.0), &json!(1))
    );

    // Edit and delete: the author only; someone else's is 404.
    let (status, body) = send(
        client
            .patch(format!("{base}/api/reviews/{review_id}"))
            .bearer_auth(&other)
            .json(&json!({"star": 1})),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("REVIEW_NOT_FOUND")),
        "{body}"
    );
    let (status, edited) = send(
        client
            .patch(format!("{base}/api/reviews/{review_id}"))
            .bearer_auth(&buyer)
            .json(&json!({"star": 5})),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(
        (&edited["star"], &edited["content"]),
        (&json!(5), &json!("잘 먹고 있어요"))
    );
    let (_, item) = send(client.get(format!("{base}/api/items/{item_id}"))).await;
    assert_eq!(item["starAvg"], json!(5.0));
    let (status, mine) = send(
        client
            .get(format!("{base}/api/users/me/reviews"))
            .bearer_auth(&buyer),
    )
    .await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["data"][0], edited);
    let (status, body) = send(
        client
            .delete(format!("{base}/api/reviews/{review_id}"))
            .bearer_auth(&other),
    )
    .await;
    assert_eq!((status, &body["code"]), (404, &json!("REVIEW_NOT_FOUND")));
    let (status, _) = send(
        client
            .delete(format!("{base}/api/reviews/{review_id}"))
            .bearer_auth(&buyer),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = send(client.get(format!("{base}/api/reviews/{review_id}"))).await;
    assert_eq!((status, &body["code"]), (404, &json!("REVIEW_NOT_FOUND")));
    let (_, item) = send(client.get(format!("{base}/api/items/{item_id}"))).await;
    assert_eq!(
        (&item["starAvg"], &item["reviewCount"]),
        (&json!(0.0), &json!(0))
    );
    test.fleet.shutdown().await.unwrap();
}
