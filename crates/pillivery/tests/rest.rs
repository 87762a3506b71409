//! The REST surface of the whole fleet, through the gateway, over real gRPC.

mod common;

use common::{get, start_fleet};
use serde_json::json;

#[tokio::test]
async fn a_category_page_sorted_by_price_has_the_spec_shape() {
    let test = start_fleet().await;
    let (status, headers, body) = get(&format!(
        "{}/api/items?category=EYE&sort=PRICE_L&page=1&size=20",
        test.base
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("x-request-id"));
    let rows = body["data"].as_array().expect("data is a list");
    assert!(!rows.is_empty() && rows.len() <= 20);
    let page_info = &body["pageInfo"];
    assert_eq!(page_info["page"], json!(1));
    assert_eq!(page_info["size"], json!(20));
    let total = page_info["totalElements"].as_i64().unwrap();
    assert_eq!(page_info["totalPages"].as_i64().unwrap(), (total + 19) / 20);
    let mut previous = (i64::MIN, i64::MIN);
    for row in rows {
        assert!(
            row["categories"]
                .as_array()
                .unwrap()
                .contains(&json!("EYE"))
        );
        let key = (
            row["realPrice"].as_i64().unwrap(),
            row["itemId"].as_i64().unwrap(),
        );
        assert!(
            key > previous,
            "not sorted by price, then id: {previous:?} then {key:?}"
        );
        previous = key;
        // Every field of the shape is present, money as integers.
        for field in [
            "itemId",
            "productName",
            "enterprise",
            "thumbnail",
            "categories",
            "originPrice",
            "discountRate",
            "discountPrice",
            "realPrice",
            "sales",
            "starAvg",
            "reviewCount",
            "createdAt",
        ] {
            assert!(row.get(field).is_some(), "{field} missing in {row}");
        }
        assert_eq!(
            row["originPrice"].as_i64().unwrap() - row["discountPrice"].as_i64().unwrap(),
            row["realPrice"].as_i64().unwrap()
        );
        let created = row["createdAt"].as_str().unwrap();
        assert_eq!(
            created.len(),
            "2026-11-24T02:00:00.123456Z".len(),
            "{created}"
        );
    }
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_item_is_a_404_in_the_error_shape() {
    let test = start_fleet().await;
    let (status, headers, body) = get(&format!("{}/api/items/999999", test.base)).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(body["status"], json!(404));
    assert_eq!(body["code"], json!("ITEM_NOT_FOUND"));
    assert_eq!(body["message"], json!("존재하지 않는 아이템입니다."));
    assert_eq!(
        body["requestId"].as_str().unwrap(),
        headers["x-request-id"].to_str().unwrap()
    );
    assert!(body.get("fieldErrors").is_none());

    let (status, _, item) = get(&format!("{}/api/items/1", test.base)).await;
    assert_eq!(status, 200);
    assert_eq!(item["itemId"], json!(1));
    assert!(item["registeredDate"].as_str().unwrap().len() == 10);
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_are_all_reported_in_the_callers_language() {
    let test = start_fleet().await;
    let response = pillivery_testkit::http_client()
        .get(format!(
            "{}/api/items?sort=CHEAPEST&size=0&category=EYE&minPrice=-5",
            test.base
        ))
        .header("accept-language", "en-US,en;q=0.9")
        .header("x-request-id", "test-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.headers()["x-request-id"], "test-request-1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("VALIDATION_FAILED"));
    assert_eq!(body["message"], json!("The request has invalid values."));
    assert_eq!(body["requestId"], json!("test-request-1"));
    let mut fields: Vec<&str> = body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    fields.sort();
    // The gateway's (`sort` does not parse) and the catalog's (the rest) together.
    assert_eq!(fields, ["minPrice", "size", "sort"], "{body}");
    let sort_error = body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|error| error["field"] == "sort")
        .unwrap();
    assert!(
        sort_error["reason"]
            .as_str()
            .unwrap()
            .starts_with("must be one of")
    );

    // Values that parse but break the rules are the service's violations, all at once.
    let (status, _, body) = get(&format!(
        "{}/api/items?size=0&page=0&minPrice=-5",
        test.base
    ))
    .await;
    assert_eq!(status, 400, "{body}");
    let mut fields: Vec<&str> = body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["minPrice", "page", "size"], "{body}");
    let size_error = body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|error| error["field"] == "size")
        .unwrap();
    assert_eq!(size_error["rejectedValue"], json!(0));
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn paging_past_the_end_keeps_the_true_totals() {
    let test = start_fleet().await;
    let (status, _, body) = get(&format!("{}/api/items?page=1000&size=100", test.base)).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!([]));
    assert_eq!(body["pageInfo"]["totalElements"], json!(200));
    assert_eq!(body["pageInfo"]["totalPages"], json!(2));
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_legacy_routes_are_bindings_of_the_same_search() {
    let test = start_fleet().await;
    let (status, _, on_sale) = get(&format!("{}/api/items/on-sale?size=100", test.base)).await;
    assert_eq!(status, 200, "{on_sale}");
    let rows = on_sale["data"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|row| row["discountRate"].as_f64().unwrap() > 0.0)
    );
    let (status, _, eye) = get(&format!(
        "{}/api/items/categories?categoryName=EYE",
        test.base
    ))
    .await;
    assert_eq!(status, 200, "{eye}");
    let (_, _, eye_new) = get(&format!("{}/api/items?category=EYE", test.base)).await;
    assert_eq!(eye, eye_new);
    let (status, _, categories) = get(&format!("{}/api/categories", test.base)).await;
    assert_eq!(status, 200);
    assert_eq!(categories["data"][0], json!({"code": "EYE", "label": "눈"}));
    assert_eq!(categories["data"].as_array().unwrap().len(), 9);
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_annotated_routes_are_reachable() {
    let test = start_fleet().await;
    let client = pillivery_testkit::http_client();
    // An internal RPC, asked for as gRPC on the public port.
    let response = client
        .post(format!(
            "{}/pillivery.catalog.v1.CatalogInternalService/BatchGetItems",
            test.base
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("ROUTE_NOT_FOUND"));
    // A browse RPC by its gRPC path is not a REST route either.
    let response = client
        .post(format!(
            "{}/pillivery.catalog.v1.CatalogService/GetItem",
            test.base
        ))
        .header("content-type", "application/grpc")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // A known path with another method.
    let response = client
        .post(format!("{}/api/items", test.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], json!(405));
    assert_eq!(body["code"], json!("METHOD_NOT_ALLOWED"));
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn responses_are_gzipped_when_asked() {
    let test = start_fleet().await;
    let response = pillivery_testkit::http_client()
        .get(format!("{}/api/items?size=100", test.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_service_reports_serving_on_its_own_health_port() {
    let test = start_fleet().await;
    for name in pillivery::SERVICES {
        let service = test.fleet.service(name).expect("running");
        pillivery_platform::server::wait_until_serving(
            service.grpc_addr,
            pillivery_platform::server::READINESS,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|error| panic!("{name}: {error}"));
        pillivery_platform::server::wait_until_serving(
            service.grpc_addr,
            pillivery_platform::server::LIVENESS,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_ne!(service.grpc_addr.port(), test.fleet.http_addr.port());
    }
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_describes_what_is_served() {
    let test = start_fleet().await;
    let (status, _, document) = get(&format!("{}/api/openapi.json", test.base)).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], json!("3.1.0"));
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/items/{itemId}"));
    assert!(paths.contains_key("/api/items"));
    assert!(paths.contains_key("/api/users/me"));
    assert!(paths.contains_key("/api/admin/users/{userId}"));
    assert!(paths.contains_key("/api/admin/items:import"));
    // Reviews are served (the catalog's ReviewService), so documented.
    assert!(paths.contains_key("/api/items/{itemId}/reviews"));
    assert!(paths.contains_key("/api/users/me/reviews"));
    assert!(paths.contains_key("/api/auth/oauth2/{provider}/authorize"));
    let sort = document["paths"]["/api/items"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "sort")
        .unwrap();
    assert!(
        sort["schema"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("PRICE_L"))
    );

    // The reference validator, when CI provides it (`.ci/run` always does).
    if let Ok(command) = std::env::var("PILLIVERY_TEST_OPENAPI_VALIDATOR") {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("openapi.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
        let mut parts = command.split_whitespace();
        let output = std::process::Command::new(parts.next().unwrap())
            .args(parts)
            .arg(&file)
            .output()
            .expect("the validator runs");
        assert!(
            output.status.success(),
            "OpenAPI 3.1 validation failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    test.fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_are_limited_and_routes_without_one_accept_empty_or_braces() {
    let test = start_fleet().await;
    let client = pillivery_testkit::http_client();
    let response = client
        .get(format!("{}/api/items/1", test.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("PAYLOAD_TOO_LARGE"));
    assert_eq!(body["status"], json!(413));

    let response = client
        .get(format!("{}/api/items/1", test.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = client
        .get(format!("{}/api/items/1", test.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("MALFORMED_JSON"));
    test.fleet.shutdown().await.unwrap();
}
