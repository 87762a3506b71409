//! Item detail through the gateway counts one view per client address and day: the gateway
//! forwards the connection's peer address (`x-client-ip`), and an `X-Forwarded-For` header is
//! ignored unless `trust_forwarded_for` is set (it is not in the embedded fleet).

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::start_fleet;

/// GET `url` from a socket bound to `local` (any 127.x.y.z reaches the gateway on Linux's
/// loopback); answers the `views` of the item shown.
async fn views_from(local: Ipv4Addr, url: &str, forwarded_for: Option<&str>) -> i64 {
    let client = pillivery_testkit::reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(local))
        .build()
        .expect("an HTTP client");
    let mut request = client.get(url);
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    let response = request.send().await.expect("the gateway answers");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    body["views"].as_i64().expect("views is a number")
}

#[tokio::test]
async fn each_client_address_is_one_view_a_day() {
    let test = start_fleet().await;
    let url = format!("{}/api/items/1", test.base);
    let first = Ipv4Addr::new(127, 0, 0, 1);
    let second = Ipv4Addr::new(127, 0, 0, 2);
    assert_eq!(views_from(first, &url, None).await, 1);
    assert_eq!(views_from(first, &url, None).await, 1);
    // A forged header does not make the same client a new visitor.
    assert_eq!(views_from(first, &url, Some("203.0.113.9")).await, 1);
    assert_eq!(views_from(second, &url, None).await, 2);
    assert_eq!(views_from(second, &url, None).await, 2);
    // Another item has its own count.
    let other = format!("{}/api/items/2", test.base);
    assert_eq!(views_from(second, &other, None).await, 1);
}
