//! Each route's declared policy is applied before any service is called.

mod common;

use std::collections::BTreeMap;

use common::start_fleet;
use pillivery_platform::shutdown::Shutdown;
use serde_json::json;

#[tokio::test]
async fn admin_routes_need_a_verified_token() {
    let test = start_fleet().await;
    let catalog = test.fleet.service("catalog").unwrap().grpc_addr;
    // A second gateway exposing the admin service of the same catalog, found through DNS (the
    // way it finds pods behind a headless Kubernetes service).
    let mut upstreams = BTreeMap::new();
    upstreams.insert(
        "catalog".to_owned(),
        gateway::GatewayUpstream::new(
            format!("dns://127.0.0.1:{}", catalog.port()),
            &[
                "pillivery.catalog.v1.CatalogService",
                "pillivery.catalog.v1.CatalogAdminService",
            ],
        ),
    );
    let bound = gateway::BoundGateway::bind(gateway::GatewayConfig {
        http_host: [127, 0, 0, 1].into(),
        http_port: 0,
        server: pillivery_platform::server::ServerConfig::loopback(),
        upstreams,
        cors_allowed_origins: "https://shop.example".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", bound.http_addr());
    let stop = Shutdown::new();
    let serving = tokio::spawn(bound.serve(stop.clone()));

    let client = pillivery_testkit::http_client();
    let response = client
        .post(format!("{base}/api/admin/items"))
        .json(&json!({"productName": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("AUTHENTICATION_REQUIRED"));

    let response = client
        .delete(format!("{base}/api/admin/items/1"))
        .bearer_auth("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("INVALID_TOKEN"));

    // CORS for the configured storefront origin only.
    let preflight = client
        .request(
            pillivery_testkit::reqwest::Method::OPTIONS,
            format!("{base}/api/items"),
        )
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let foreign = client
        .get(format!("{base}/api/categories"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // Public routes of the same gateway reach the catalog through the resolved endpoints.
    let response = client
        .get(format!("{base}/api/items/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // The document marks the admin routes as needing a bearer token.
    let document: serde_json::Value = client
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        document["paths"]["/api/admin/items"]["post"]["security"],
        json!([{"bearerAuth": []}])
    );
    assert!(document["paths"]["/api/admin/items:import"]["post"].is_object());

    stop.trigger();
    serving.await.unwrap().unwrap();
    test.fleet.shutdown().await.unwrap();
}
