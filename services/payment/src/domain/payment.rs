//! A customer's payment of one order, as a small state machine.
//!
//! ```text
//! READY ──approve──▶ APPROVED ──refund──▶ REFUNDED
//!   │
//!   ├──buyer cancels──▶ CANCELED
//!   └──fails / expires / amount mismatch──▶ FAILED
//! ```
//!
//! An order has at most one live READY attempt: a ready while one is live (and not past the
//! PG's ready TTL) answers that attempt again, so two tabs never hold two payable tids. An
//! order with an APPROVED (or REFUNDED) attempt is paid: no new ready, whatever the order
//! service says, so a crash between "approved" and "order PAID" can never lead to a second
//! payment. The PG redirects are repeated by browsers (refresh, back button): a repeat answers
//! the recorded outcome without calling the PG again.

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Ready,
    Approved,
    Canceled,
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        PaymentStatus::Ready,
        PaymentStatus::Approved,
        PaymentStatus::Canceled,
        PaymentStatus::Failed,
        PaymentStatus::Refunded,
    ];

    /// As stored and as the SPEC spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Ready => "READY",
            PaymentStatus::Approved => "APPROVED",
            PaymentStatus::Canceled => "CANCELED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(text: &str) -> Option<PaymentStatus> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// The customer's money moved (and may have moved back): the order counts as paid.
    pub fn is_paid(self) -> bool {
        matches!(self, PaymentStatus::Approved | PaymentStatus::Refunded)
    }
}

/// One recorded attempt, as much as the rules need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptSummary {
    pub payment_id: i64,
    pub status: PaymentStatus,
    pub created_at: DateTime<Utc>,
}

/// What a ready call does for an order, given its recorded attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyStep {
    /// An attempt is APPROVED or REFUNDED: the order is paid; refuse.
    AlreadyPaid,
    /// A live READY attempt exists: answer it again.
    Reuse(i64),
    /// Ask the PG for a new payment, after marking these READY attempts FAILED (the PG has
    /// expired them; their tids can no longer be paid).
    New { expire: Vec<i64> },
}

pub fn ready_step(
    attempts: &[AttemptSummary],
    now: DateTime<Utc>,
    ready_ttl: chrono::Duration,
) -> ReadyStep {
    if attempts.iter().any(|attempt| attempt.status.is_paid()) {
        return ReadyStep::AlreadyPaid;
    }
    let ready = attempts
        .iter()
        .filter(|attempt| attempt.status == PaymentStatus::Ready);
    let mut expire = Vec::new();
    for attempt in ready {
        if attempt.created_at + ready_ttl > now {
            return ReadyStep::Reuse(attempt.payment_id);
        }
        expire.push(attempt.payment_id);
    }
    ReadyStep::New { expire }
}

/// What the approval redirect does, given the status of the order's latest attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApproveStep {
    /// No attempt: the order was never readied.
    NotFound,
    /// READY: approve at the PG.
    Send,
    /// Already approved (or refunded since): answer as recorded, no PG call.
    Replay,
    /// Canceled or failed: that tid cannot be approved any more.
    InvalidState,
}

pub fn approve_step(latest: Option<PaymentStatus>) -> ApproveStep {
    match latest {
        None => ApproveStep::NotFound,
        Some(PaymentStatus::Ready) => ApproveStep::Send,
        Some(PaymentStatus::Approved | PaymentStatus::Refunded) => ApproveStep::Replay,
        Some(PaymentStatus::Canceled | PaymentStatus::Failed) => ApproveStep::InvalidState,
    }
}

/// The buyer's way out on the PG's page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbandonKind {
    Cancel,
    Fail,
}

impl AbandonKind {
    pub fn target(self) -> PaymentStatus {
        match self {
            AbandonKind::Cancel => PaymentStatus::Canceled,
            AbandonKind::Fail => PaymentStatus::Failed,
        }
    }

    /// The path segment of its redirect route.
    pub fn segment(self) -> &'static str {
        match self {
            AbandonKind::Cancel => "cancel",
            AbandonKind::Fail => "fail",
        }
    }
}

/// What a cancel/fail redirect does to the latest attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbandonStep {
    NotFound,
    /// READY → the kind's target status.
    Apply,
    /// Already in that status (a reload): answer it again.
    Replay,
    /// Any other status: an approved payment is not undone by a stray redirect.
    InvalidState,
}

pub fn abandon_step(latest: Option<PaymentStatus>, kind: AbandonKind) -> AbandonStep {
    match latest {
        None => AbandonStep::NotFound,
        Some(PaymentStatus::Ready) => AbandonStep::Apply,
        Some(status) if status == kind.target() => AbandonStep::Replay,
        Some(_) => AbandonStep::InvalidState,
    }
}

/// Our `partner_order_id` for an order's payment. Deterministic, so a ready repeated after a
/// lost answer finds the PG's first payment (the sandbox and KakaoPay answer the pending tid).
pub fn order_partner_id(order_id: i64) -> String {
    format!("order-{order_id}")
}

/// `<base>/api/payments/orders/{orderId}/{action}`: where the PG sends the buyer back.
pub fn pg_return_url(public_base_url: &str, order_id: i64, action: &str) -> String {
    format!(
        "{}/api/payments/orders/{order_id}/{action}",
        public_base_url.trim_end_matches('/')
    )
}

/// A storefront page with `orderId=<id>` added to its query (before any fragment).
pub fn storefront_url(page: &str, order_id: i64) -> String {
    let (base, fragment) = match page.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (page, None),
    };
    let separator = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    let mut url = format!("{base}{separator}orderId={order_id}");
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        "2026-11-24T02:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::minutes(minutes)
    }

    fn attempt(payment_id: i64, status: PaymentStatus, created: i64) -> AttemptSummary {
        AttemptSummary {
            payment_id,
            status,
            created_at: at(created),
        }
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PaymentStatus::parse("ready"), None);
        assert_eq!(PaymentStatus::parse(""), None);
    }

    #[test]
    fn ready_reuses_a_live_attempt_and_never_pays_twice() {
        let ttl = chrono::Duration::minutes(15);
        let cases: Vec<(&str, Vec<AttemptSummary>, i64, ReadyStep)> = vec![
            ("first ready", vec![], 0, ReadyStep::New { expire: vec![] }),
            (
                "live ready",
                vec![attempt(1, Ready, 0)],
                14,
                ReadyStep::Reuse(1),
            ),
            (
                "ready exactly at the TTL is expired",
                vec![attempt(1, Ready, 0)],
                15,
                ReadyStep::New { expire: vec![1] },
            ),
            (
                "after a cancel",
                vec![attempt(2, Canceled, 5), attempt(1, Failed, 0)],
                6,
                ReadyStep::New { expire: vec![] },
            ),
            (
                "approved",
                vec![attempt(1, Approved, 0)],
                1,
                ReadyStep::AlreadyPaid,
            ),
            (
                "approved beside a live ready",
                vec![attempt(2, Ready, 3), attempt(1, Approved, 0)],
                4,
                ReadyStep::AlreadyPaid,
            ),
            (
                "refunded",
                vec![attempt(1, Refunded, 0)],
                1,
                ReadyStep::AlreadyPaid,
            ),
            (
                "an expired and a live one",
                vec![attempt(2, Ready, 10), attempt(1, Ready, 0)],
                16,
                ReadyStep::Reuse(2),
            ),
        ];
        for (name, attempts, now, expected) in cases {
            assert_eq!(ready_step(&attempts, at(now), ttl), expected, "{name}");
        }
    }

    #[test]
    fn approve_sends_only_from_ready() {
        let cases = [
            (None, ApproveStep::NotFound),
            (Some(Ready), ApproveStep::Send),
            (Some(Approved), ApproveStep::Replay),
            (Some(Refunded), ApproveStep::Replay),
            (Some(Canceled), ApproveStep::InvalidState),
            (Some(Failed), ApproveStep::InvalidState),
        ];
        for (latest, expected) in cases {
            assert_eq!(approve_step(latest), expected, "{latest:?}");
        }
    }

    #[test]
    fn cancel_and_fail_change_only_ready_attempts() {
        use AbandonKind::*;
        let cases = [
            (None, Cancel, AbandonStep::NotFound),
            (Some(Ready), Cancel, AbandonStep::Apply),
            (Some(Ready), Fail, AbandonStep::Apply),
            (Some(Canceled), Cancel, AbandonStep::Replay),
            (Some(Failed), Fail, AbandonStep::Replay),
            (Some(Canceled), Fail, AbandonStep::InvalidState),
            (Some(Failed), Cancel, AbandonStep::InvalidState),
            (Some(Approved), Cancel, AbandonStep::InvalidState),
            (Some(Approved), Fail, AbandonStep::InvalidState),
            (Some(Refunded), Cancel, AbandonStep::InvalidState),
        ];
        for (latest, kind, expected) in cases {
            assert_eq!(abandon_step(latest, kind), expected, "{latest:?} {kind:?}");
        }
        assert_eq!(Cancel.target(), Canceled);
        assert_eq!(Fail.segment(), "fail");
    }

    #[test]
    fn urls_are_built_from_configuration() {
        assert_eq!(
            pg_return_url("https://shop.example/", 42, "approve"),
            "https://shop.example/api/payments/orders/42/approve"
        );
        let cases = [
            (
                "https://shop.example/done",
                "https://shop.example/done?orderId=7",
            ),
            (
                "https://shop.example/done?x=1",
                "https://shop.example/done?x=1&orderId=7",
            ),
            (
                "https://shop.example/done?",
                "https://shop.example/done?orderId=7",
            ),
            (
                "https://shop.example/#/done",
                "https://shop.example/?orderId=7#/done",
            ),
        ];
        for (page, expected) in cases {
            assert_eq!(storefront_url(page, 7), expected, "{page}");
        }
        assert_eq!(
            order_partner_id(9_007_199_254_740_993),
            "order-9007199254740993"
        );
    }
}
