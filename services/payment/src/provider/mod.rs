//! The payment gateway (PG) behind one trait, so that a second provider needs no change
//! anywhere else (SPEC section 6).
//!
//! The trait speaks in our terms (amounts in KRW, our partner ids, "one-time" or "subscription"
//! contracts) and every failure is classified once, here, into what the rest of the service must
//! do about it:
//!
//! - [`ProviderError::Declined`]: the PG answered and said no (a 4xx with an error code, e.g.
//!   KakaoPay's -782 for a declined subscription charge). A business outcome: recorded, never
//!   retried at once, never counted by the circuit breaker.
//! - [`ProviderError::NotSent`]: the request certainly did not reach the PG (the breaker is open,
//!   the bulkhead is full, the connection could not be made). Safe to try again later.
//! - [`ProviderError::Unknown`]: the request may have reached the PG and we do not know what it
//!   did (a timeout after sending, a broken connection mid-answer, a 5xx). A charge in this state
//!   must be resolved before anything new is sent for it.

pub mod kakaopay;

use chrono::{DateTime, Utc};

/// Which contract a payment is made under: KakaoPay has one CID for one-time payments and one
/// for subscriptions (whose first approval yields the key, SID, used for renewals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contract {
    OneTime,
    Subscription,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyRequest {
    pub contract: Contract,
    pub partner_order_id: String,
    pub partner_user_id: String,
    pub item_name: String,
    pub quantity: i64,
    pub total_amount: i64,
    pub approval_url: String,
    pub cancel_url: String,
    pub fail_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    pub tid: String,
    pub next_redirect_pc_url: String,
    pub next_redirect_mobile_url: String,
    pub next_redirect_app_url: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApproveRequest {
    pub contract: Contract,
    pub tid: String,
    pub partner_order_id: String,
    pub partner_user_id: String,
    pub pg_token: String,
}

/// A payment the PG approved (or a subscription renewal it charged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub tid: String,
    pub aid: String,
    /// The subscription key, for payments under [`Contract::Subscription`].
    pub sid: Option<String>,
    /// What the PG actually charged; compared with what we asked for.
    pub amount: i64,
    pub approved_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionChargeRequest {
    pub sid: String,
    /// Deterministic per (subscription, cycle): a repeat is recognised by the PG.
    pub partner_order_id: String,
    pub partner_user_id: String,
    pub item_name: String,
    pub quantity: i64,
    pub total_amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelRequest {
    pub contract: Contract,
    pub tid: String,
    pub cancel_amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancellation {
    pub tid: String,
    pub canceled_amount: i64,
    pub canceled_at: DateTime<Utc>,
}

/// Where a payment stands at the PG, in our terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgState {
    /// Readied, the buyer has not finished (or the partner has not approved yet).
    Pending,
    /// Approved and not (fully) cancelled.
    Approved,
    /// Approved, then cancelled in full.
    Canceled,
    /// The buyer cancelled, the payment failed or expired: never approved.
    Abandoned,
    /// A status this client does not know.
    Unknown,
}

/// The PG's own view of a payment: its raw answer (shown to the customer as `pg`), the state
/// it reports, and, once approved, the approval (what an approve whose answer was lost would
/// have said).
#[derive(Clone, Debug, PartialEq)]
pub struct Lookup {
    pub status: String,
    pub state: PgState,
    pub approval: Option<Approval>,
    /// How much has been cancelled (refunded) so far.
    pub canceled_amount: i64,
    pub canceled_at: Option<DateTime<Utc>>,
    pub raw: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("declined by the PG: {code} {message}")]
    Declined { code: String, message: String },
    #[error("not sent to the PG: {0}")]
    NotSent(String),
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

impl ProviderError {
    pub fn is_decline(&self) -> bool {
        matches!(self, ProviderError::Declined { .. })
    }
}

/// A payment gateway.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Short name for logs and the `pg` field (`kakaopay`).
    fn name(&self) -> &'static str;

    async fn ready(&self, request: &ReadyRequest) -> Result<Ready, ProviderError>;

    async fn approve(&self, request: &ApproveRequest) -> Result<Approval, ProviderError>;

    async fn charge_subscription(
        &self,
        request: &SubscriptionChargeRequest,
    ) -> Result<Approval, ProviderError>;

    async fn cancel(&self, request: &CancelRequest) -> Result<Cancellation, ProviderError>;

    async fn inactivate_subscription(&self, sid: &str) -> Result<(), ProviderError>;

    async fn lookup(&self, contract: Contract, tid: &str) -> Result<Lookup, ProviderError>;
}
