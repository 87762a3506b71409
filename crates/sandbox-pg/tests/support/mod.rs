//! What the sandbox's black-box tests share: a sandbox on 127.0.0.1:0, a client that does not
//! follow redirects, and helpers for the KakaoPay calls and the `/sandbox/…` endpoints.

#![allow(dead_code)] // each test binary uses a different part of it

use std::time::Duration;

use pillivery_platform::shutdown::Shutdown;
use pillivery_sandbox_pg::{
    DEFAULT_SECRET_KEY, FaultConfig, Ledger, ONE_TIME_CID, SUBSCRIPTION_CID, Sandbox, SandboxConfig,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const ONE_TIME: &str = ONE_TIME_CID;
pub const SUBSCRIPTION: &str = SUBSCRIPTION_CID;
pub const APPROVAL_URL: &str = "http://shop.test/api/payments/orders/7/approve";
pub const CANCEL_URL: &str = "http://shop.test/api/payments/orders/7/cancel";
pub const FAIL_URL: &str = "http://shop.test/api/payments/orders/7/fail";

/// A running sandbox; stopped when dropped.
pub struct Harness {
    /// Where the sandbox is reached (its bound address).
    pub base: String,
    /// [`BoundSandbox::base_url`]: the origin of the buyer-page URLs.
    pub public: String,
    pub client: reqwest::Client,
    pub sandbox: Sandbox,
    shutdown: Shutdown,
    pub served: tokio::task::JoinHandle<Result<(), pillivery_sandbox_pg::SandboxError>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        // The redirects of the buyer page are what is tested.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .expect("an HTTP client")
}

pub async fn spawn() -> Harness {
    spawn_with(SandboxConfig::loopback()).await
}

pub async fn spawn_with(config: SandboxConfig) -> Harness {
    let bound = Sandbox::bind(config).await.expect("the sandbox binds");
    let base = format!("http://{}", bound.addr());
    let public = bound.base_url().to_owned();
    let sandbox = bound.sandbox();
    let shutdown = Shutdown::new();
    let served = tokio::spawn(bound.serve(shutdown.clone()));
    Harness {
        base,
        public,
        client: client(Duration::from_secs(30)),
        sandbox,
        shutdown,
        served,
    }
}

impl Harness {
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// A KakaoPay call with the default secret key; the status and JSON body.
    pub async fn kakao(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.kakao_with(&self.client, path, body).await
    }

    /// A KakaoPay call that may fail at the client (a timeout).
    pub async fn send(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &Value,
    ) -> reqwest::Result<reqwest::Response> {
        client
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("SECRET_KEY {DEFAULT_SECRET_KEY}"))
            .json(body)
            .send()
            .await
    }

    pub async fn kakao_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .send(client, path, &body)
            .await
            .expect("the sandbox answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    pub async fn ready(&self, cid: &str, order: &str, total: i64) -> Value {
        self.ready_with(cid, order, total, APPROVAL_URL).await
    }

    pub async fn ready_with(&self, cid: &str, order: &str, total: i64, approval: &str) -> Value {
        let (status, body) = self
            .kakao(
                "/online/v1/payment/ready",
                ready_body(cid, order, total, approval),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// GETs a buyer-page URL; the status and the `Location` header.
    pub async fn visit(&self, url: &str) -> (StatusCode, Option<String>) {
        let response = self.client.get(url).send().await.expect("the page answers");
        let location = response
            .headers()
            .get("location")
            .map(|value| value.to_str().expect("an ASCII location").to_owned());
        (response.status(), location)
    }

    /// Follows `next_redirect_pc_url` with `auto=approve`; the pg_token of the redirect.
    pub async fn buyer_approves(&self, ready: &Value) -> String {
        let url = format!("{}?auto=approve", text(ready, "next_redirect_pc_url"));
        let (status, location) = self.visit(&url).await;
        assert_eq!(status, StatusCode::FOUND);
        let location = location.expect("a Location");
        pg_token_of(&location)
    }

    pub async fn approve(
        &self,
        cid: &str,
        tid: &str,
        order: &str,
        pg_token: &str,
    ) -> (StatusCode, Value) {
        self.kakao(
            "/online/v1/payment/approve",
            json!({
                "cid": cid, "tid": tid, "partner_order_id": order,
                "partner_user_id": "user-1", "pg_token": pg_token,
            }),
        )
        .await
    }

    /// Ready → buyer approves → approve; the approval.
    pub async fn pay(&self, cid: &str, order: &str, total: i64) -> Value {
        let ready = self.ready(cid, order, total).await;
        let pg_token = self.buyer_approves(&ready).await;
        let (status, approval) = self
            .approve(cid, text(&ready, "tid"), order, &pg_token)
            .await;
        assert_eq!(status, StatusCode::OK, "{approval}");
        approval
    }

    pub async fn charge(&self, sid: &str, order: &str, total: i64) -> (StatusCode, Value) {
        self.kakao_with(
            &self.client,
            "/online/v1/payment/subscription",
            charge_body(sid, order, total),
        )
        .await
    }

    pub async fn ledger(&self, query: &str) -> Ledger {
        let response = self
            .client
            .get(format!("{}/sandbox/ledger{query}", self.base))
            .send()
            .await
            .expect("the ledger answers");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a ledger")
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the admin endpoint answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    pub async fn set_faults(&self, faults: Value) {
        let (status, body) = self
            .admin(reqwest::Method::POST, "/sandbox/faults", Some(faults))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub async fn reset_faults(&self) {
        let (status, body) = self
            .admin(reqwest::Method::DELETE, "/sandbox/faults", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            serde_json::from_value::<FaultConfig>(body["faults"].clone()).unwrap(),
            FaultConfig::default()
        );
    }
}

pub fn ready_body(cid: &str, order: &str, total: i64, approval: &str) -> Value {
    json!({
        "cid": cid,
        "partner_order_id": order,
        "partner_user_id": "user-1",
        "item_name": "Omega-3 and 1 more",
        "quantity": 2,
        "total_amount": total,
        "tax_free_amount": 0,
        "approval_url": approval,
        "cancel_url": CANCEL_URL,
        "fail_url": FAIL_URL,
    })
}

pub fn charge_body(sid: &str, order: &str, total: i64) -> Value {
    json!({
        "cid": SUBSCRIPTION,
        "sid": sid,
        "partner_order_id": order,
        "partner_user_id": "user-1",
        "item_name": "Omega-3 subscription",
        "quantity": 1,
        "total_amount": total,
        "tax_free_amount": 0,
    })
}

pub fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is a string in {body}"))
}

pub fn pg_token_of(location: &str) -> String {
    let token = location
        .split_once("pg_token=")
        .unwrap_or_else(|| panic!("a pg_token in {location}"))
        .1;
    assert_eq!(token.len(), 20, "{location}");
    assert!(
        token.chars().all(|c| c.is_ascii_alphanumeric()),
        "{location}"
    );
    token.to_owned()
}

/// Asserts a KakaoPay error answer and returns its `error_code`.
pub fn error_code(status: StatusCode, body: &Value) -> i64 {
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}: {body}"
    );
    assert!(body["error_message"].is_string(), "{body}");
    assert!(body["extras"]["method_result_code"].is_string(), "{body}");
    assert!(
        body["extras"]["method_result_message"].is_string(),
        "{body}"
    );
    body["error_code"].as_i64().expect("a numeric error_code")
}

/// Polls `check` until it returns true or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
