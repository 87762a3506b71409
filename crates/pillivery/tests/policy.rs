//! Each route's declared policy is applied before any service is called.

mod common;

use std::collections::BTreeMap;

use chrono::Utc;
use pillivery_platform::auth::{self, Role, SigningKey, TokenConfig, TokenIssuer};
use pillivery_platform::kv::KeyValueStore;
use pillivery_platform::shutdown::Shutdown;
use serde_json::json;

#[tokio::test]
async fn admin_routes_need_a_verified_token() {
    // The fleet signs with this key, so its catalog accepts what the test issues.
    let key = SigningKey::generate();
    let data = tempfile::tempdir().unwrap();
    let mut options = pillivery::FleetOptions::for_tests(data.path());
    options.jwt_private_key = Some(key.to_pkcs8_pem());
    let test = common::TestFleet::from(pillivery::Fleet::start(options).await.unwrap(), data);
    let issuer = TokenIssuer::new(key.clone(), TokenConfig::default());
    let blacklist = KeyValueStore::in_memory();
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
        jwks: auth::jwks(&[key.verification_key()]).to_string(),
        ..Default::default()
    })
    .await
    .unwrap()
    .with_key_value_store(blacklist.clone());
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
        .get(format!("{base}/api/items/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // A user's valid token on an admin route: 403, not 401.
    let user_token = issuer.issue(5, Role::User, Utc::now());
    let response = client
        .delete(format!("{base}/api/admin/items/1"))
        .bearer_auth(&user_token.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("FORBIDDEN"));

    // An expired token, and one signed by another key with the same kid.
    let expired = issuer.issue(1, Role::Admin, Utc::now() - chrono::Duration::hours(2));
    let forged_key = SigningKey::from_pkcs8_pem(
        &SigningKey::generate().to_pkcs8_pem(),
        Some(key.kid().to_owned()),
    )
    .unwrap();
    let forged =
        TokenIssuer::new(forged_key, TokenConfig::default()).issue(1, Role::Admin, Utc::now());
    for (token, reason) in [
        (&expired.token, "TOKEN_EXPIRED"),
        (&forged.token, "INVALID_TOKEN"),
    ] {
        let response = client
            .delete(format!("{base}/api/admin/items/1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{reason}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], json!(reason));
    }

    // An administrator passes the gateway, and the catalog (verifying again) deletes.
    let admin_token = issuer.issue(1, Role::Admin, Utc::now());
    let response = client
        .delete(format!("{base}/api/admin/items/1"))
        .bearer_auth(&admin_token.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    // Once blacklisted (logout, withdrawal) the same token is refused at once.
    blacklist
        .set(
            &auth::blacklist_key(&admin_token.token_id),
            b"1",
            Some(std::time::Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let response = client
        .delete(format!("{base}/api/admin/items/1"))
        .bearer_auth(&admin_token.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("TOKEN_REVOKED"));

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
