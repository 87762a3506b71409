//! KakaoPay's wire shapes: the request and response bodies of the online payment API and its
//! error body, as the sandbox speaks them.
//!
//! Requests ignore fields the sandbox does not use (KakaoPay has many optional ones), so a real
//! client's full body is accepted. Responses carry the fields a client reads (ids, amounts,
//! timestamps, statuses) with KakaoPay's names; timestamps are KakaoPay's zone-less Korean time,
//! `2026-05-01T14:03:27`. The types derive both directions so clients and tests can read them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// KakaoPay's error codes as the sandbox uses them (see `docs/payments.md`).
pub mod code {
    /// A missing, malformed or inconsistent parameter.
    pub const INVALID_PARAMETER: i32 = -2;
    /// A missing or unknown secret key.
    pub const UNAUTHORIZED: i32 = -401;
    /// Cancel amount above what is still cancelable.
    pub const CANCEL_AMOUNT_EXCEEDED: i32 = -8;
    /// Approve before the buyer approved on the payment page.
    pub const NOT_AUTHORIZED_BY_BUYER: i32 = -701;
    /// Approve of a tid that is already approved.
    pub const ALREADY_APPROVED: i32 = -702;
    /// Approve with a pg_token that is not the one the buyer's approval issued.
    pub const INVALID_PG_TOKEN: i32 = -703;
    /// Approve of a payment the buyer canceled or that failed.
    pub const PAYMENT_ABORTED: i32 = -704;
    /// No payment with this tid (for this cid).
    pub const TID_NOT_FOUND: i32 = -721;
    /// The buyer did not approve within the ready TTL.
    pub const PAYMENT_EXPIRED: i32 = -723;
    /// Cancel of a payment that was never approved.
    pub const NOT_APPROVED: i32 = -730;
    /// A subscription charge refused: an injected decline, or an unknown or inactive SID.
    pub const SUBSCRIPTION_DECLINED: i32 = -782;
    /// An injected internal error.
    pub const INTERNAL: i32 = -9798;
    /// An injected timeout answered after the hold.
    pub const TIMEOUT: i32 = -9799;
}

/// KakaoPay's error body: `{error_code, error_message, extras:{method_result_code,
/// method_result_message}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error_code: i32,
    pub error_message: String,
    pub extras: ErrorExtras,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorExtras {
    pub method_result_code: String,
    pub method_result_message: String,
}

/// An error answer: its HTTP status and KakaoPay body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KakaoError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl KakaoError {
    fn new(status: StatusCode, code: i32, result_code: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            body: ErrorBody {
                error_code: code,
                error_message: message.clone(),
                extras: ErrorExtras {
                    method_result_code: result_code.to_owned(),
                    method_result_message: message,
                },
            },
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_PARAMETER,
            "INVALID_PARAMETER",
            message,
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or unknown secret key (expected `Authorization: SECRET_KEY <key>`)",
        )
    }

    /// A 4xx business refusal with its own code.
    pub fn refused(code: i32, result_code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, result_code, message)
    }

    pub fn declined(result_code: &str, message: impl Into<String>) -> Self {
        Self::refused(code::SUBSCRIPTION_DECLINED, result_code, message)
    }

    pub fn injected_server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "INTERNAL_ERROR",
            "internal server error (injected by the sandbox)",
        )
    }

    pub fn injected_timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            code::TIMEOUT,
            "TIMEOUT",
            "timed out (injected by the sandbox)",
        )
    }
}

impl IntoResponse for KakaoError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// `POST /online/v1/payment/ready`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyRequest {
    pub cid: String,
    pub partner_order_id: String,
    pub partner_user_id: String,
    pub item_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    pub quantity: i64,
    pub total_amount: i64,
    pub tax_free_amount: i64,
    /// Unset: a tenth of the taxable amount, as KakaoPay computes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_amount: Option<i64>,
    pub approval_url: String,
    pub cancel_url: String,
    pub fail_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyResponse {
    pub tid: String,
    pub tms_result: bool,
    pub next_redirect_app_url: String,
    pub next_redirect_mobile_url: String,
    pub next_redirect_pc_url: String,
    pub android_app_scheme: String,
    pub ios_app_scheme: String,
    pub created_at: String,
}

/// `POST /online/v1/payment/approve`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproveRequest {
    pub cid: String,
    pub tid: String,
    pub partner_order_id: String,
    pub partner_user_id: String,
    pub pg_token: String,
}

/// `POST /online/v1/payment/subscription`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRequest {
    pub cid: String,
    pub sid: String,
    pub partner_order_id: String,
    pub partner_user_id: String,
    pub item_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    pub quantity: i64,
    pub total_amount: i64,
    pub tax_free_amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_amount: Option<i64>,
}

/// `POST /online/v1/payment/cancel`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub cid: String,
    pub tid: String,
    pub cancel_amount: i64,
    pub cancel_tax_free_amount: i64,
    /// Unset: a tenth of the taxable part of the cancel amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_vat_amount: Option<i64>,
}

/// `POST /online/v1/payment/manage/subscription/inactive`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InactiveRequest {
    pub cid: String,
    pub sid: String,
}

/// `POST /online/v1/payment/order`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub cid: String,
    pub tid: String,
}

/// KakaoPay's amount breakdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub total: i64,
    pub tax_free: i64,
    pub vat: i64,
    pub point: i64,
    pub discount: i64,
    pub green_deposit: i64,
}

impl Amount {
    pub fn new(total: i64, tax_free: i64, vat: i64) -> Self {
        Self {
            total,
            tax_free,
            vat,
            ..Self::default()
        }
    }

    pub fn minus(self, other: Amount) -> Amount {
        Amount::new(
            self.total - other.total,
            self.tax_free - other.tax_free,
            self.vat - other.vat,
        )
    }

    pub fn plus(self, other: Amount) -> Amount {
        Amount::new(
            self.total + other.total,
            self.tax_free + other.tax_free,
            self.vat + other.vat,
        )
    }
}

/// The answer of an approve and of a subscription charge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproveResponse {
    pub aid: String,
    pub tid: String,
    pub cid: String,
    /// Set for subscription-CID payments: the key for later charges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub partner_order_id: String,
    pub partner_user_id: String,
    /// `MONEY` (KakaoPay balance) in the sandbox.
    pub payment_method_type: String,
    pub item_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    pub quantity: i64,
    pub amount: Amount,
    pub created_at: String,
    pub approved_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResponse {
    pub aid: String,
    pub tid: String,
    pub cid: String,
    /// `PART_CANCEL_PAYMENT` or `CANCEL_PAYMENT` (nothing left to cancel).
    pub status: String,
    pub partner_order_id: String,
    pub partner_user_id: String,
    pub payment_method_type: String,
    pub item_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    pub quantity: i64,
    /// The payment's original amount.
    pub amount: Amount,
    /// What this cancel refunded.
    pub approved_cancel_amount: Amount,
    /// Everything refunded so far, this cancel included.
    pub canceled_amount: Amount,
    pub cancel_available_amount: Amount,
    pub created_at: String,
    pub approved_at: String,
    pub canceled_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InactiveResponse {
    pub cid: String,
    pub sid: String,
    /// `INACTIVE`
    pub status: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_approved_at: Option<String>,
    pub inactivated_at: String,
}

/// One step of a payment's history in a lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAction {
    pub aid: String,
    pub approved_at: String,
    pub amount: i64,
    pub point_amount: i64,
    pub discount_amount: i64,
    pub green_deposit: i64,
    /// `PAYMENT` or `CANCEL`.
    pub payment_action_type: String,
    pub payload: String,
}

/// The answer of a lookup (`/order`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderResponse {
    pub tid: String,
    pub cid: String,
    /// `READY`, `AUTH_PASSWORD` (buyer approved, approve pending), `SUCCESS_PAYMENT`,
    /// `PART_CANCEL_PAYMENT`, `CANCEL_PAYMENT`, `QUIT_PAYMENT` (buyer canceled) or
    /// `FAIL_PAYMENT` (failed or expired).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub partner_order_id: String,
    pub partner_user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method_type: Option<String>,
    pub item_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    pub quantity: i64,
    pub amount: Amount,
    pub canceled_amount: Amount,
    pub cancel_available_amount: Amount,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_at: Option<String>,
    pub payment_action_details: Vec<PaymentAction>,
}
