//! Shared set-up for the fleet's black-box tests.
#![allow(dead_code)]

use pillivery::{Fleet, FleetOptions};
use pillivery_testkit::reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION};
use pillivery_testkit::reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

/// A fleet on free ports with its own data folder, removed when dropped.
pub struct TestFleet {
    pub fleet: Fleet,
    pub base: String,
    _data: tempfile::TempDir,
}

impl TestFleet {
    /// A fleet started by the test itself (custom options), with its data folder.
    pub fn from(fleet: Fleet, data: tempfile::TempDir) -> TestFleet {
        let base = format!("http://{}", fleet.http_addr);
        TestFleet {
            fleet,
            base,
            _data: data,
        }
    }
}

pub async fn start_fleet() -> TestFleet {
    let data = tempfile::tempdir().expect("a data folder");
    let fleet = Fleet::start(FleetOptions::for_tests(data.path()))
        .await
        .expect("the fleet starts");
    let base = format!("http://{}", fleet.http_addr);
    TestFleet {
        fleet,
        base,
        _data: data,
    }
}

/// Sends `request` and answers the status, the headers and the body as JSON (`null` when the
/// answer is not JSON: redirects, the sandbox's HTML page, 204).
pub async fn send_full(request: RequestBuilder) -> (u16, HeaderMap, Value) {
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("a body");
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let json = if is_json && !body.is_empty() {
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "JSON body for {status}, got {:?}",
                String::from_utf8_lossy(&body)
            )
        })
    } else {
        Value::Null
    };
    (status, headers, json)
}

/// Like [`send_full`], without the headers.
pub async fn send(request: RequestBuilder) -> (u16, Value) {
    let (status, _, json) = send_full(request).await;
    (status, json)
}

/// `GET url` with the test client.
pub async fn get(url: &str) -> (u16, HeaderMap, Value) {
    send_full(pillivery_testkit::http_client().get(url)).await
}

/// The `Location` of a redirect.
pub fn location(headers: &HeaderMap) -> String {
    headers
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .expect("an ASCII Location")
        .to_owned()
}

/// Signs up a customer (`{prefix}{n}@example.com`, phone `010-{phone_block}-{n}`) and logs in;
/// answers the access token.
pub async fn signed_up_user(
    test: &TestFleet,
    client: &Client,
    prefix: &str,
    display_name: &str,
    phone_block: &str,
    n: u32,
) -> String {
    let base = &test.base;
    let email = format!("{prefix}{n}@example.com");
    let (status, body) = send(client.post(format!("{base}/api/users")).json(&json!({
        "email": email,
        "password": "secret-pass1",
        "displayName": display_name,
        "realName": "김고객",
        "phone": format!("010-{phone_block}-{n:04}"),
        "city": "서울",
        "detailAddress": "강남구 1"
    })))
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, tokens) = send(
        client
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"email": email, "password": "secret-pass1"})),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    tokens["accessToken"].as_str().unwrap().to_owned()
}
