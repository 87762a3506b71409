//! KakaoPay over HTTPS (`https://open-api.kakaopay.com`), or the project's sandbox, which speaks
//! the same API (`crates/sandbox-pg`).
//!
//! The edge to the PG is guarded like every other edge (SPEC section 9): its own connection pool
//! with a connect timeout, one deadline per call, a bulkhead bounding the calls in flight, and a
//! circuit breaker that counts faults (timeouts, connection errors, 5xx) but not declines (a 4xx
//! with an `error_code` means the PG is healthy and said no). Retries happen only for faults and
//! only for calls that are safe to repeat: lookups, deactivations, and subscription charges,
//! which carry a deterministic `partner_order_id` the PG recognises.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pillivery_platform::resilience::{
    Backoff, BreakerState, Bulkhead, CircuitBreaker, EdgePolicy, RetryBudget,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    Approval, ApproveRequest, CancelRequest, Cancellation, Contract, Lookup, PaymentProvider,
    PgState, ProviderError, Ready, ReadyRequest, SubscriptionChargeRequest,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KakaoPayConfig {
    /// `https://open-api.kakaopay.com`, or the sandbox's address.
    pub base_url: String,
    /// Sent as `Authorization: SECRET_KEY <key>`. Comes from a secret, never from a file in git.
    pub secret_key: String,
    /// The CID for one-time payments (`TC0ONETIME` is KakaoPay's test CID).
    pub cid_one_time: String,
    /// The CID for subscriptions (`TCSUBSCRIP` is KakaoPay's test CID).
    pub cid_subscription: String,
    /// Breaker, bulkhead, timeouts and retries of the PG edge. `default_deadline_ms` is the
    /// deadline of one call, all attempts included.
    pub edge: EdgePolicy,
}

impl Default for KakaoPayConfig {
    fn default() -> Self {
        KakaoPayConfig {
            base_url: "https://open-api.kakaopay.com".to_owned(),
            secret_key: String::new(),
            cid_one_time: "TC0ONETIME".to_owned(),
            cid_subscription: "TCSUBSCRIP".to_owned(),
            edge: EdgePolicy {
                max_concurrent: 256,
                default_deadline_ms: 10_000,
                ..EdgePolicy::default()
            },
        }
    }
}

impl KakaoPayConfig {
    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|error| format!("payment provider base_url: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("payment provider base_url must be http(s)".into());
        }
        if self.secret_key.trim().is_empty() {
            return Err("payment provider secret_key is not set".into());
        }
        if self.cid_one_time.trim().is_empty() || self.cid_subscription.trim().is_empty() {
            return Err("payment provider CIDs must be set".into());
        }
        self.edge
            .validate()
            .map_err(|reason| format!("payment provider edge: {reason}"))
    }
}

/// The KakaoPay client.
pub struct KakaoPay {
    http: reqwest::Client,
    base_url: String,
    authorization: String,
    cid_one_time: String,
    cid_subscription: String,
    deadline: Duration,
    breaker: CircuitBreaker,
    bulkhead: Bulkhead,
    retry_budget: RetryBudget,
    backoff: Backoff,
    max_retries: u32,
}

impl std::fmt::Debug for KakaoPay {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KakaoPay")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Whether a failed attempt may be sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Repeating it cannot do anything twice (lookups, deactivation, charges with their
    /// deterministic partner order id).
    Safe,
    /// It might (a second cancel, a second ready): one attempt only.
    Never,
}

/// KakaoPay's error body: `{error_code, error_message, extras:{method_result_code, ...}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error_code: Value,
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    extras: Option<Value>,
}

impl KakaoPay {
    pub fn new(config: &KakaoPayConfig) -> Result<KakaoPay, String> {
        let edge = &config.edge;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(edge.connect_timeout_ms))
            .pool_max_idle_per_host(edge.max_concurrent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("payment provider client: {error}"))?;
        Ok(KakaoPay {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            authorization: format!("SECRET_KEY {}", config.secret_key),
            cid_one_time: config.cid_one_time.clone(),
            cid_subscription: config.cid_subscription.clone(),
            deadline: Duration::from_millis(edge.default_deadline_ms),
            breaker: CircuitBreaker::new("pg", edge.breaker.clone()),
            bulkhead: Bulkhead::new(
                "pg",
                edge.max_concurrent,
                Duration::from_millis(edge.max_queue_wait_ms),
            ),
            retry_budget: RetryBudget::new(0.2, 10, Duration::from_secs(10)),
            backoff: Backoff {
                base: Duration::from_millis(edge.retry_base_ms),
                max: Duration::from_millis(edge.retry_max_ms),
            },
            max_retries: edge.max_retries,
        })
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    fn cid(&self, contract: Contract) -> &str {
        match contract {
            Contract::OneTime => &self.cid_one_time,
            Contract::Subscription => &self.cid_subscription,
        }
    }

    /// One logical call: breaker → bulkhead → attempts within one deadline.
    async fn post(&self, path: &str, body: Value, repeat: Repeat) -> Result<Value, ProviderError> {
        let deadline = Instant::now() + self.deadline;
        self.retry_budget.deposit();
        let mut retries = 0;
        loop {
            let outcome = self.attempt(path, &body, deadline).await;
            let retryable = match &outcome {
                Ok(_) | Err(ProviderError::Declined { .. }) => return outcome,
                Err(ProviderError::NotSent(_)) => true,
                Err(ProviderError::Unknown(_)) => repeat == Repeat::Safe,
            };
            let pause = self.backoff.delay(retries);
            // An open breaker fails fast (SPEC section 9): waiting a backoff only to be refused
            // again would turn its sub-millisecond answer into tens of milliseconds.
            let may_retry = retryable
                && self.breaker.state() != BreakerState::Open
                && retries < self.max_retries
                && Instant::now() + pause < deadline
                && self.retry_budget.try_withdraw();
            if !may_retry {
                return outcome;
            }
            retries += 1;
            tracing::debug!(path, retries, "retrying the PG call after a fault");
            tokio::time::sleep(pause).await;
        }
    }

    async fn attempt(
        &self,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, ProviderError> {
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|_| ProviderError::NotSent("the PG circuit breaker is open".into()))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let _slot = tokio::time::timeout(remaining, self.bulkhead.acquire())
            .await
            .map_err(|_| ProviderError::NotSent("no PG slot before the deadline".into()))?
            .map_err(|_| ProviderError::NotSent("too many PG calls in flight".into()))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            permit.ignore();
            return Err(ProviderError::NotSent(
                "deadline passed before sending".into(),
            ));
        }
        let started = std::time::Instant::now();
        let sent = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .json(body)
            .timeout(remaining)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                permit.fault();
                metrics::counter!("pillivery_pg_calls_total", "path" => path.to_owned(), "outcome" => "fault").increment(1);
                // A refused or failed connection never carried the request.
                return Err(if error.is_connect() {
                    ProviderError::NotSent(format!("cannot connect to the PG: {error}"))
                } else {
                    ProviderError::Unknown(format!("no answer from the PG: {error}"))
                });
            }
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(text) => text,
            Err(error) => {
                permit.fault();
                return Err(ProviderError::Unknown(format!(
                    "the PG's answer broke off: {error}"
                )));
            }
        };
        metrics::histogram!("pillivery_pg_call_seconds", "path" => path.to_owned())
            .record(started.elapsed().as_secs_f64());
        if status.is_success() {
            permit.success();
            metrics::counter!("pillivery_pg_calls_total", "path" => path.to_owned(), "outcome" => "ok").increment(1);
            return serde_json::from_str(&text).map_err(|error| {
                ProviderError::Unknown(format!("the PG answered unreadable JSON: {error}"))
            });
        }
        if status.is_client_error()
            && let Ok(error) = serde_json::from_str::<ErrorBody>(&text)
        {
            // The PG is healthy: it understood and refused.
            permit.success();
            metrics::counter!("pillivery_pg_calls_total", "path" => path.to_owned(), "outcome" => "declined").increment(1);
            let code = match &error.error_code {
                Value::String(code) => code.clone(),
                other => other.to_string(),
            };
            let method_result = error
                .extras
                .as_ref()
                .and_then(|extras| extras.get("method_result_message"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let message = if method_result.is_empty() {
                error.error_message
            } else {
                format!("{} ({method_result})", error.error_message)
            };
            return Err(ProviderError::Declined { code, message });
        }
        permit.fault();
        metrics::counter!("pillivery_pg_calls_total", "path" => path.to_owned(), "outcome" => "fault").increment(1);
        Err(ProviderError::Unknown(format!("the PG answered {status}")))
    }
}

fn text(answer: &Value, field: &str) -> Result<String, ProviderError> {
    match answer.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        _ => Err(ProviderError::Unknown(format!(
            "the PG's answer has no `{field}`"
        ))),
    }
}

/// KakaoPay writes local times without an offset (`2026-11-24T11:00:00`, Korea time); the
/// sandbox may write RFC 3339. Both are read; anything else is "now".
fn instant(answer: &Value, field: &str) -> DateTime<Utc> {
    let Some(raw) = answer.get(field).and_then(Value::as_str) else {
        return Utc::now();
    };
    if let Ok(instant) = DateTime::parse_from_rfc3339(raw) {
        return instant.with_timezone(&Utc);
    }
    chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .and_then(|local| {
            local
                .and_local_timezone(chrono::FixedOffset::east_opt(9 * 3600)?)
                .single()
        })
        .map_or_else(Utc::now, |instant| instant.with_timezone(&Utc))
}

fn approval(answer: &Value) -> Result<Approval, ProviderError> {
    let amount = answer
        .get("amount")
        .and_then(|amount| amount.get("total"))
        .and_then(Value::as_i64)
        .ok_or_else(|| ProviderError::Unknown("the PG's answer has no amount.total".into()))?;
    Ok(Approval {
        tid: text(answer, "tid")?,
        aid: text(answer, "aid").unwrap_or_default(),
        sid: answer
            .get("sid")
            .and_then(Value::as_str)
            .filter(|sid| !sid.is_empty())
            .map(str::to_owned),
        amount,
        approved_at: instant(answer, "approved_at"),
    })
}

/// Reads KakaoPay's `/payment/order` answer: `status` names the state, `amount`,
/// `canceled_amount` and `approved_at` / `canceled_at` what happened.
fn lookup(raw: Value) -> Lookup {
    let status = text(&raw, "status").unwrap_or_default();
    let state = match status.as_str() {
        "READY" | "SEND_TMS" | "OPEN_PAYMENT" | "SELECT_METHOD" | "ARS_WAITING"
        | "AUTH_PASSWORD" | "ISSUED_SID" => PgState::Pending,
        "SUCCESS_PAYMENT" | "PART_CANCEL_PAYMENT" => PgState::Approved,
        "CANCEL_PAYMENT" => PgState::Canceled,
        "QUIT_PAYMENT" | "FAIL_AUTH_PASSWORD" | "FAIL_PAYMENT" => PgState::Abandoned,
        _ => PgState::Unknown,
    };
    let approval = if matches!(state, PgState::Approved | PgState::Canceled) {
        // The lookup has no top-level `aid`: the approval's is the first action's.
        let aid = raw
            .get("payment_action_details")
            .and_then(Value::as_array)
            .and_then(|actions| actions.first())
            .and_then(|action| action.get("aid"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        approval(&raw)
            .ok()
            .map(|approval| Approval { aid, ..approval })
    } else {
        None
    };
    let canceled_amount = raw
        .get("canceled_amount")
        .and_then(|amount| amount.get("total"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let canceled_at = raw
        .get("canceled_at")
        .and_then(Value::as_str)
        .map(|_| instant(&raw, "canceled_at"));
    Lookup {
        status,
        state,
        approval,
        canceled_amount,
        canceled_at,
        raw,
    }
}

#[async_trait::async_trait]
impl PaymentProvider for KakaoPay {
    fn name(&self) -> &'static str {
        "kakaopay"
    }

    async fn ready(&self, request: &ReadyRequest) -> Result<Ready, ProviderError> {
        let body = json!({
            "cid": self.cid(request.contract),
            "partner_order_id": request.partner_order_id,
            "partner_user_id": request.partner_user_id,
            "item_name": request.item_name,
            "quantity": request.quantity,
            "total_amount": request.total_amount,
            "tax_free_amount": 0,
            "approval_url": request.approval_url,
            "cancel_url": request.cancel_url,
            "fail_url": request.fail_url,
        });
        let answer = self
            .post("/online/v1/payment/ready", body, Repeat::Never)
            .await?;
        Ok(Ready {
            tid: text(&answer, "tid")?,
            next_redirect_pc_url: text(&answer, "next_redirect_pc_url")?,
            next_redirect_mobile_url: text(&answer, "next_redirect_mobile_url").unwrap_or_default(),
            next_redirect_app_url: text(&answer, "next_redirect_app_url").unwrap_or_default(),
            created_at: instant(&answer, "created_at"),
        })
    }

    async fn approve(&self, request: &ApproveRequest) -> Result<Approval, ProviderError> {
        let body = json!({
            "cid": self.cid(request.contract),
            "tid": request.tid,
            "partner_order_id": request.partner_order_id,
            "partner_user_id": request.partner_user_id,
            "pg_token": request.pg_token,
        });
        // An approval is tied to its tid and pg_token: the PG refuses a second one, so an
        // unknown outcome is settled by a lookup, not by sending it again.
        let answer = self
            .post("/online/v1/payment/approve", body, Repeat::Never)
            .await?;
        approval(&answer)
    }

    async fn charge_subscription(
        &self,
        request: &SubscriptionChargeRequest,
    ) -> Result<Approval, ProviderError> {
        let body = json!({
            "cid": self.cid_subscription,
            "sid": request.sid,
            "partner_order_id": request.partner_order_id,
            "partner_user_id": request.partner_user_id,
            "item_name": request.item_name,
            "quantity": request.quantity,
            "total_amount": request.total_amount,
            "tax_free_amount": 0,
        });
        let answer = self
            .post("/online/v1/payment/subscription", body, Repeat::Safe)
            .await?;
        approval(&answer)
    }

    async fn cancel(&self, request: &CancelRequest) -> Result<Cancellation, ProviderError> {
        let body = json!({
            "cid": self.cid(request.contract),
            "tid": request.tid,
            "cancel_amount": request.cancel_amount,
            "cancel_tax_free_amount": 0,
        });
        let answer = self
            .post("/online/v1/payment/cancel", body, Repeat::Never)
            .await?;
        let canceled_amount = answer
            .get("canceled_amount")
            .and_then(|amount| amount.get("total"))
            .and_then(Value::as_i64)
            .unwrap_or(request.cancel_amount);
        Ok(Cancellation {
            tid: text(&answer, "tid")?,
            canceled_amount,
            canceled_at: instant(&answer, "canceled_at"),
        })
    }

    async fn inactivate_subscription(&self, sid: &str) -> Result<(), ProviderError> {
        let body = json!({"cid": self.cid_subscription, "sid": sid});
        self.post(
            "/online/v1/payment/manage/subscription/inactive",
            body,
            Repeat::Safe,
        )
        .await
        .map(drop)
    }

    async fn lookup(&self, contract: Contract, tid: &str) -> Result<Lookup, ProviderError> {
        let body = json!({"cid": self.cid(contract), "tid": tid});
        let raw = self
            .post("/online/v1/payment/order", body, Repeat::Safe)
            .await?;
        Ok(lookup(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_are_read_from_kakaopay_answers() {
        let answer = json!({
            "aid": "A1", "tid": "T1", "cid": "TCSUBSCRIP", "sid": "S1",
            "amount": {"total": 22000, "tax_free": 0, "vat": 2000, "discount": 0},
            "approved_at": "2026-11-24T11:00:00"
        });
        let approval = approval(&answer).unwrap();
        assert_eq!(approval.tid, "T1");
        assert_eq!(approval.sid.as_deref(), Some("S1"));
        assert_eq!(approval.amount, 22_000);
        // KakaoPay's local time is Korea time.
        assert_eq!(
            approval.approved_at,
            "2026-11-24T02:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let missing = approval_missing_amount();
        assert!(matches!(missing, Err(ProviderError::Unknown(_))));
    }

    fn approval_missing_amount() -> Result<Approval, ProviderError> {
        approval(&json!({"tid": "T1"}))
    }

    #[test]
    fn lookups_say_where_the_payment_stands() {
        let cases = [
            ("READY", PgState::Pending),
            ("AUTH_PASSWORD", PgState::Pending),
            ("SUCCESS_PAYMENT", PgState::Approved),
            ("PART_CANCEL_PAYMENT", PgState::Approved),
            ("CANCEL_PAYMENT", PgState::Canceled),
            ("QUIT_PAYMENT", PgState::Abandoned),
            ("FAIL_PAYMENT", PgState::Abandoned),
            ("SOMETHING_NEW", PgState::Unknown),
        ];
        for (status, state) in cases {
            let answer = json!({
                "tid": "T1", "status": status, "sid": "S1",
                "amount": {"total": 22000}, "canceled_amount": {"total": 0},
                "approved_at": "2026-11-24T11:00:00",
                "payment_action_details": [{"aid": "A1", "payment_action_type": "PAYMENT"}]
            });
            let read = lookup(answer);
            assert_eq!(read.state, state, "{status}");
            assert_eq!(
                read.approval.is_some(),
                matches!(state, PgState::Approved | PgState::Canceled),
                "{status}"
            );
        }
        let canceled = lookup(json!({
            "tid": "T1", "status": "CANCEL_PAYMENT", "amount": {"total": 5000},
            "canceled_amount": {"total": 5000}, "canceled_at": "2026-11-24T12:00:00",
            "payment_action_details": [{"aid": "A9"}]
        }));
        let approval = canceled.approval.unwrap();
        assert_eq!((approval.aid.as_str(), approval.amount), ("A9", 5000));
        assert_eq!(canceled.canceled_amount, 5000);
        assert_eq!(
            canceled.canceled_at,
            Some("2026-11-24T03:00:00Z".parse::<DateTime<Utc>>().unwrap())
        );
    }

    #[test]
    fn configuration_needs_a_key_and_a_url() {
        let mut config = KakaoPayConfig::default();
        assert!(config.validate().unwrap_err().contains("secret_key"));
        config.secret_key = "DEV-KEY".into();
        assert_eq!(config.validate(), Ok(()));
        config.base_url = "ftp://pg".into();
        assert!(config.validate().is_err());
    }
}
