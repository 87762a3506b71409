//! Catalog administration through the gateway with a real administrator's token.

mod common;

use common::start_fleet;
use serde_json::{Value, json};

fn draft(name: &str, price: i64, rate: f64) -> Value {
    json!({
        "productName": name,
        "enterprise": "필리버리",
        "thumbnail": "https://static.pillivery.local/t.jpg",
        "descriptionImage": "https://static.pillivery.local/d.jpg",
        "mainFunction": "눈 건강",
        "baseStandard": "루테인 20mg",
        "intake": "1일 1회",
        "servingUse": "물과 함께",
        "preservePeriod": "제조일로부터 24개월",
        "distributionPeriod": "24개월",
        "statementNumber": "2026-0001",
        "registeredDate": "2026-11-01",
        "sungsang": "노란색 캡슐",
        "categories": ["EYE", "ANTIOXIDANT"],
        "originPrice": price,
        "discountRate": rate
    })
}

#[tokio::test]
async fn an_administrator_creates_imports_updates_and_deletes_items() {
    let test = start_fleet().await;
    let client = pillivery_testkit::http_client();
    let base = &test.base;
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": pillivery::DEFAULT_ADMIN_EMAIL, "password": "Admin-test-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap().to_owned();

    let created = client
        .post(format!("{base}/api/admin/items"))
        .bearer_auth(&token)
        .json(&draft("필리버리 루테인", 15_000, 0.125))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let item: Value = created.json().await.unwrap();
    assert_eq!(item["discountPrice"], json!(1_875));
    assert_eq!(item["realPrice"], json!(13_125));
    assert_eq!(item["discountRate"], json!(0.125));
    let id = item["itemId"].as_i64().unwrap();
    let read: Value = client
        .get(format!("{base}/api/items/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["productName"], json!("필리버리 루테인"));

    // An import with mistakes reports all of them by path, and inserts nothing.
    let mut bad = draft("x", -1, 1.5);
    bad["categories"] = json!([]);
    let response = client
        .post(format!("{base}/api/admin/items:import"))
        .bearer_auth(&token)
        .json(&json!([draft("좋은 상품", 9_900, 0.0), bad]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    let fields: Vec<&str> = body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"items[1].originPrice"), "{body}");
    assert!(fields.contains(&"items[1].discountRate"), "{body}");
    let response = client
        .post(format!("{base}/api/admin/items:import"))
        .bearer_auth(&token)
        .json(&json!([
            draft("가져온 상품 1", 9_900, 0.0),
            draft("가져온 상품 2", 19_900, 0.1)
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let imported: Value = response.json().await.unwrap();
    assert_eq!(imported["itemIds"].as_array().unwrap().len(), 2);

    let patched: Value = client
        .patch(format!("{base}/api/admin/items/{id}"))
        .bearer_auth(&token)
        .json(&json!({"originPrice": 20_000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["realPrice"], json!(17_500));

    let deleted = client
        .delete(format!("{base}/api/admin/items/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let gone = client
        .get(format!("{base}/api/items/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);
    let (status, _, all) = common::get(&format!("{base}/api/items?size=1")).await;
    assert_eq!(status, 200);
    assert_eq!(all["pageInfo"]["totalElements"], json!(202));
    test.fleet.shutdown().await.unwrap();
}
