//! A downstream that stops: the gateway answers 503 fast, the circuit opens, and the state is
//! visible in the gateway's `/metrics`. Its own test binary, because metrics are process-wide.

mod common;

use std::time::{Duration, Instant};

use common::{get, start_fleet};
use serde_json::json;

#[tokio::test]
async fn a_stopped_catalog_opens_the_circuit_and_the_gateway_fails_fast() {
    let mut test = start_fleet().await;
    let (status, _, _) = get(&format!("{}/api/items", test.base)).await;
    assert_eq!(status, 200);
    let admin = test.fleet.service("gateway").unwrap().admin_addr;
    let metrics_url = format!("http://{admin}/metrics");

    test.fleet.stop_service("catalog").await.unwrap();

    // Every answer is an honest 503 in the error shape; soon the breaker opens.
    let mut opened = false;
    for _ in 0..60 {
        let started = Instant::now();
        let (status, _, body) = get(&format!("{}/api/items?sort=NEWEST", test.base)).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], json!("UPSTREAM_UNAVAILABLE"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not fast: {:?}",
            started.elapsed()
        );
        let metrics = pillivery_testkit::http_client()
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("pillivery_circuit_breaker_state{breaker=\"catalog\"} 1") {
            opened = true;
            assert!(
                metrics.contains("pillivery_circuit_breaker_transitions_total{breaker=\"catalog\",from=\"closed\",to=\"open\"}"),
                "{metrics}"
            );
            break;
        }
    }
    assert!(opened, "the catalog breaker never opened");

    // Open: rejected without touching the network.
    let started = Instant::now();
    let (status, _, body) = get(&format!("{}/api/items/1", test.base)).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], json!("UPSTREAM_UNAVAILABLE"));
    assert!(started.elapsed() < Duration::from_millis(500));
    // Routes that do not use the catalog are unaffected.
    let (status, _, _) = get(&format!("{}/api/openapi.json", test.base)).await;
    assert_eq!(status, 200);
    test.fleet.shutdown().await.unwrap();
}
