//! The sandbox's books: every payment (by tid), every SID, the idempotency of
//! `partner_order_id`, and the ledger of money moved. Plain state and rules, no I/O: the HTTP
//! layer holds it behind a mutex and calls one method per request with the current time.
//!
//! The rules a client relies on:
//! - `ready` with a `(cid, partner_order_id)` already used answers the first tid while that
//!   payment is pending or paid (a second tid could be paid a second time); after the buyer
//!   canceled, failed or let it expire, a new ready starts a new payment. A repeat whose user or
//!   amounts differ is refused (-2).
//! - `subscription` with a `(cid, partner_order_id)` already charged answers the first charge
//!   and charges nothing. Declines are not remembered: no money moved, so a later retry with the
//!   same id may succeed.
//! - `approve` of an approved tid answers -702, as KakaoPay does; a client that lost the first
//!   answer resolves it with a lookup (`/order`).
//! - `cancel` is not idempotent (neither is KakaoPay's): each call refunds again until nothing is
//!   left, then -8.
//! - `inactive` of an inactive SID answers its state again.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::config::Endpoint;
use crate::kakao::{
    Amount, ApproveRequest, ApproveResponse, CancelRequest, CancelResponse, InactiveRequest,
    InactiveResponse, KakaoError, OrderRequest, OrderResponse, PaymentAction, ReadyRequest,
    ReadyResponse, SubscriptionRequest, code,
};

/// What the books need from the configuration.
#[derive(Clone, Debug)]
pub struct BooksSettings {
    pub one_time_cid: String,
    pub subscription_cid: String,
    /// The origin of the buyer page, without a trailing slash.
    pub public_url: String,
    pub ready_ttl: chrono::Duration,
}

/// A payment's state, named as KakaoPay's lookup names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Ready,
    /// The buyer approved on the page; the partner's approve call is pending.
    AuthPassword,
    SuccessPayment,
    PartCancelPayment,
    CancelPayment,
    /// The buyer canceled on the page.
    QuitPayment,
    /// The buyer's payment failed, or it expired.
    FailPayment,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Ready => "READY",
            PaymentStatus::AuthPassword => "AUTH_PASSWORD",
            PaymentStatus::SuccessPayment => "SUCCESS_PAYMENT",
            PaymentStatus::PartCancelPayment => "PART_CANCEL_PAYMENT",
            PaymentStatus::CancelPayment => "CANCEL_PAYMENT",
            PaymentStatus::QuitPayment => "QUIT_PAYMENT",
            PaymentStatus::FailPayment => "FAIL_PAYMENT",
        }
    }

    fn is_pending(self) -> bool {
        matches!(self, PaymentStatus::Ready | PaymentStatus::AuthPassword)
    }

    fn is_paid(self) -> bool {
        matches!(
            self,
            PaymentStatus::SuccessPayment
                | PaymentStatus::PartCancelPayment
                | PaymentStatus::CancelPayment
        )
    }
}

/// Where the buyer page sends the buyer back to (set for payments started with `ready`).
#[derive(Clone, Debug)]
struct BuyerUrls {
    approval: String,
    cancel: String,
    fail: String,
}

#[derive(Clone, Debug)]
struct ActionRecord {
    aid: String,
    at: DateTime<Utc>,
    amount: i64,
    kind: &'static str,
}

#[derive(Clone, Debug)]
struct Payment {
    tid: String,
    cid: String,
    partner_order_id: String,
    partner_user_id: String,
    item_name: String,
    item_code: Option<String>,
    quantity: i64,
    amount: Amount,
    urls: Option<BuyerUrls>,
    status: PaymentStatus,
    /// Set when the READY payment ran out of time (its status is then FAIL_PAYMENT).
    expired: bool,
    pg_token: Option<String>,
    aid: Option<String>,
    sid: Option<String>,
    created_at: DateTime<Utc>,
    approved_at: Option<DateTime<Utc>>,
    canceled_at: Option<DateTime<Utc>>,
    canceled: Amount,
    actions: Vec<ActionRecord>,
}

/// Whether a SID can still be charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SidStatus {
    Active,
    Inactive,
}

/// A SID as `GET /sandbox/subscriptions` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub sid: String,
    pub cid: String,
    pub partner_user_id: String,
    pub status: SidStatus,
    /// The tid of the approval that issued it.
    pub first_tid: String,
    pub item_name: String,
    /// Charges made with it, the first approval included.
    pub charges: u64,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_approved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivated_at: Option<DateTime<Utc>>,
}

/// Money in (a charge) or out (a cancel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Charge,
    Cancel,
}

/// One movement of money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// 1, 2, 3… in the order the movements happened.
    pub sequence: u64,
    pub kind: EntryKind,
    /// The call that moved it: `approve`, `subscription` or `cancel`.
    pub endpoint: Endpoint,
    pub cid: String,
    pub tid: String,
    /// The approval's or the cancel's aid.
    pub aid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub partner_order_id: String,
    pub partner_user_id: String,
    /// Always positive; `kind` says which way it went.
    pub amount: i64,
    pub tax_free_amount: i64,
    pub vat_amount: i64,
    pub at: DateTime<Utc>,
}

/// Which entries to list; every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerFilter {
    pub partner_order_id: Option<String>,
    pub partner_user_id: Option<String>,
    pub tid: Option<String>,
    pub sid: Option<String>,
    pub cid: Option<String>,
    pub kind: Option<EntryKind>,
}

impl LedgerFilter {
    fn matches(&self, entry: &LedgerEntry) -> bool {
        let equal = |wanted: &Option<String>, actual: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == actual)
        };
        equal(&self.partner_order_id, &entry.partner_order_id)
            && equal(&self.partner_user_id, &entry.partner_user_id)
            && equal(&self.tid, &entry.tid)
            && equal(&self.cid, &entry.cid)
            && self
                .sid
                .as_deref()
                .is_none_or(|wanted| entry.sid.as_deref() == Some(wanted))
            && self.kind.is_none_or(|kind| kind == entry.kind)
    }
}

/// The ledger as `GET /sandbox/ledger` answers it: the matching entries and their sums.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub entries: Vec<LedgerEntry>,
    pub charges: u64,
    pub cancels: u64,
    pub charged_amount: i64,
    pub canceled_amount: i64,
    /// Charged minus canceled.
    pub net_amount: i64,
}

/// Which SIDs to list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionFilter {
    pub sid: Option<String>,
    pub partner_user_id: Option<String>,
    pub status: Option<SidStatus>,
}

/// The buyer's choice on the payment page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuyerChoice {
    Approve,
    Cancel,
    Fail,
}

/// What the payment page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutView {
    pub tid: String,
    pub item_name: String,
    pub quantity: i64,
    pub total_amount: i64,
    pub subscription: bool,
    pub status: PaymentStatus,
}

/// Why the payment page cannot do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckoutRefusal {
    /// No payment behind this tid, or one not started with `ready`.
    NotFound,
    /// The payment has already ended another way (paid, canceled, failed, expired).
    Finished(PaymentStatus, &'static str),
}

/// The sandbox's state. See the module documentation for its rules.
pub struct Books {
    settings: BooksSettings,
    payments: HashMap<String, Payment>,
    /// `(cid, partner_order_id)` of a ready → its tid.
    readies: HashMap<(String, String), String>,
    /// `(cid, partner_order_id)` of a subscription charge → its tid.
    charges: HashMap<(String, String), String>,
    subscriptions: HashMap<String, SubscriptionRecord>,
    ledger: Vec<LedgerEntry>,
    sequence: u64,
}

/// Korea Standard Time, the zone of KakaoPay's timestamps (no daylight saving).
const KOREA: FixedOffset = match FixedOffset::east_opt(9 * 60 * 60) {
    Some(offset) => offset,
    None => panic!("UTC+9 is a valid offset"),
};
const MAX_ID_CHARS: usize = 100;
const MAX_URL_CHARS: usize = 255;

/// KakaoPay's timestamps: Korean time without a zone.
pub fn kakao_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&KOREA)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// The VAT KakaoPay assumes when none is given: a tenth of the price before tax, rounded.
fn default_vat(taxable: i64) -> i64 {
    (taxable + 5) / 11
}

fn required(name: &str, value: &str) -> Result<(), KakaoError> {
    if value.trim().is_empty() {
        return Err(KakaoError::invalid(format!("{name} must not be empty")));
    }
    if value.chars().count() > MAX_ID_CHARS {
        return Err(KakaoError::invalid(format!(
            "{name} must be at most {MAX_ID_CHARS} characters"
        )));
    }
    Ok(())
}

fn url(name: &str, value: &str) -> Result<(), KakaoError> {
    // Printable ASCII only (non-ASCII must come percent-encoded): the buyer page sends the
    // buyer to these URLs in a `Location` header.
    if !(value.starts_with("http://") || value.starts_with("https://"))
        || value.len() > MAX_URL_CHARS
        || !value.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(KakaoError::invalid(format!(
            "{name} must be an http(s) URL of at most {MAX_URL_CHARS} printable ASCII characters"
        )));
    }
    Ok(())
}

/// Checks a charge's quantity and amounts and returns its breakdown.
fn amounts(
    quantity: i64,
    total: i64,
    tax_free: i64,
    vat: Option<i64>,
) -> Result<Amount, KakaoError> {
    if quantity < 1 {
        return Err(KakaoError::invalid("quantity must be at least 1"));
    }
    if total <= 0 {
        return Err(KakaoError::invalid("total_amount must be greater than 0"));
    }
    if !(0..=total).contains(&tax_free) {
        return Err(KakaoError::invalid(
            "tax_free_amount must be between 0 and total_amount",
        ));
    }
    let taxable = total - tax_free;
    let vat = vat.unwrap_or_else(|| default_vat(taxable));
    if !(0..=taxable).contains(&vat) {
        return Err(KakaoError::invalid(
            "vat_amount must be between 0 and total_amount - tax_free_amount",
        ));
    }
    Ok(Amount::new(total, tax_free, vat))
}

fn reused_with_other_parameters() -> KakaoError {
    KakaoError::invalid("partner_order_id was already used with different parameters")
}

impl Books {
    pub fn new(settings: BooksSettings) -> Self {
        Self {
            settings,
            payments: HashMap::new(),
            readies: HashMap::new(),
            charges: HashMap::new(),
            subscriptions: HashMap::new(),
            ledger: Vec::new(),
            sequence: 0,
        }
    }

    /// A KakaoPay-looking id (`T` + 19 digits for a tid): random digits then a sequence, so ids
    /// never repeat in one process and rarely across restarts.
    fn new_id(&mut self, prefix: char) -> String {
        self.sequence += 1;
        let random: u64 = rand::rng().random_range(0..1_000_000_000);
        format!("{prefix}{random:09}{:010}", self.sequence)
    }

    fn new_pg_token() -> String {
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(20)
            .map(char::from)
            .collect()
    }

    fn check_cid(&self, cid: &str) -> Result<(), KakaoError> {
        if cid == self.settings.one_time_cid || cid == self.settings.subscription_cid {
            Ok(())
        } else {
            Err(KakaoError::invalid(format!("unknown cid `{cid}`")))
        }
    }

    /// Turns a pending payment whose time is up into an expired FAIL_PAYMENT.
    fn expire(&mut self, tid: &str, now: DateTime<Utc>) {
        let ttl = self.settings.ready_ttl;
        if let Some(payment) = self.payments.get_mut(tid)
            && payment.status.is_pending()
            && now - payment.created_at > ttl
        {
            payment.status = PaymentStatus::FailPayment;
            payment.expired = true;
        }
    }

    /// The payment `tid` of `cid`, expired first when its time is up.
    fn payment_of(
        &mut self,
        cid: &str,
        tid: &str,
        now: DateTime<Utc>,
    ) -> Result<&mut Payment, KakaoError> {
        self.expire(tid, now);
        self.payments
            .get_mut(tid)
            .filter(|payment| payment.cid == cid)
            .ok_or_else(|| {
                KakaoError::refused(
                    code::TID_NOT_FOUND,
                    "TID_NOT_FOUND",
                    format!("no payment {tid} for cid {cid}"),
                )
            })
    }

    fn ready_response(&self, payment: &Payment) -> ReadyResponse {
        let page = format!("{}/checkout/{}", self.settings.public_url, payment.tid);
        ReadyResponse {
            tid: payment.tid.clone(),
            tms_result: false,
            next_redirect_app_url: format!("{page}/app"),
            next_redirect_mobile_url: format!("{page}/mobile"),
            next_redirect_pc_url: page.clone(),
            android_app_scheme: format!("kakaotalk://kakaopay/pg?url={page}/app"),
            ios_app_scheme: format!("kakaotalk://kakaopay/pg?url={page}/app"),
            created_at: kakao_time(payment.created_at),
        }
    }

    /// `POST /online/v1/payment/ready`
    pub fn ready(
        &mut self,
        request: ReadyRequest,
        now: DateTime<Utc>,
    ) -> Result<ReadyResponse, KakaoError> {
        required("cid", &request.cid)?;
        required("partner_order_id", &request.partner_order_id)?;
        required("partner_user_id", &request.partner_user_id)?;
        required("item_name", &request.item_name)?;
        url("approval_url", &request.approval_url)?;
        url("cancel_url", &request.cancel_url)?;
        url("fail_url", &request.fail_url)?;
        self.check_cid(&request.cid)?;
        let amount = amounts(
            request.quantity,
            request.total_amount,
            request.tax_free_amount,
            request.vat_amount,
        )?;
        let key = (request.cid.clone(), request.partner_order_id.clone());
        if let Some(tid) = self.readies.get(&key).cloned() {
            self.expire(&tid, now);
            if let Some(first) = self.payments.get(&tid)
                && (first.status.is_pending() || first.status.is_paid())
            {
                if first.partner_user_id != request.partner_user_id
                    || first.amount.total != amount.total
                    || first.amount.tax_free != amount.tax_free
                {
                    return Err(reused_with_other_parameters());
                }
                return Ok(self.ready_response(first));
            }
        }
        let tid = self.new_id('T');
        let payment = Payment {
            tid: tid.clone(),
            cid: request.cid,
            partner_order_id: request.partner_order_id,
            partner_user_id: request.partner_user_id,
            item_name: request.item_name,
            item_code: request.item_code,
            quantity: request.quantity,
            amount,
            urls: Some(BuyerUrls {
                approval: request.approval_url,
                cancel: request.cancel_url,
                fail: request.fail_url,
            }),
            status: PaymentStatus::Ready,
            expired: false,
            pg_token: None,
            aid: None,
            sid: None,
            created_at: now,
            approved_at: None,
            canceled_at: None,
            canceled: Amount::default(),
            actions: Vec::new(),
        };
        let response = self.ready_response(&payment);
        self.payments.insert(tid.clone(), payment);
        self.readies.insert(key, tid);
        Ok(response)
    }

    /// What the payment page of `tid` shows.
    pub fn checkout_view(
        &mut self,
        tid: &str,
        now: DateTime<Utc>,
    ) -> Result<CheckoutView, CheckoutRefusal> {
        self.expire(tid, now);
        let payment = self
            .payments
            .get(tid)
            .filter(|payment| payment.urls.is_some())
            .ok_or(CheckoutRefusal::NotFound)?;
        Ok(CheckoutView {
            tid: payment.tid.clone(),
            item_name: payment.item_name.clone(),
            quantity: payment.quantity,
            total_amount: payment.amount.total,
            subscription: payment.cid == self.settings.subscription_cid,
            status: payment.status,
        })
    }

    /// The buyer's choice on the page of `tid`; answers where to send the buyer. Repeating the
    /// same choice (a reload) sends the buyer to the same place again.
    pub fn buyer_chooses(
        &mut self,
        tid: &str,
        choice: BuyerChoice,
        now: DateTime<Utc>,
    ) -> Result<String, CheckoutRefusal> {
        self.expire(tid, now);
        let payment = self
            .payments
            .get_mut(tid)
            .ok_or(CheckoutRefusal::NotFound)?;
        let Some(urls) = payment.urls.clone() else {
            return Err(CheckoutRefusal::NotFound);
        };
        if payment.expired {
            return Err(CheckoutRefusal::Finished(
                payment.status,
                "this payment has expired",
            ));
        }
        match (choice, payment.status) {
            (BuyerChoice::Approve, PaymentStatus::Ready) => {
                let token = Self::new_pg_token();
                payment.pg_token = Some(token.clone());
                payment.status = PaymentStatus::AuthPassword;
                Ok(with_pg_token(&urls.approval, &token))
            }
            (BuyerChoice::Approve, status)
                if status == PaymentStatus::AuthPassword || status.is_paid() =>
            {
                let token = payment.pg_token.clone().unwrap_or_default();
                Ok(with_pg_token(&urls.approval, &token))
            }
            (BuyerChoice::Cancel, PaymentStatus::Ready | PaymentStatus::AuthPassword) => {
                payment.status = PaymentStatus::QuitPayment;
                Ok(urls.cancel)
            }
            (BuyerChoice::Cancel, PaymentStatus::QuitPayment) => Ok(urls.cancel),
            (BuyerChoice::Fail, PaymentStatus::Ready | PaymentStatus::AuthPassword) => {
                payment.status = PaymentStatus::FailPayment;
                Ok(urls.fail)
            }
            (BuyerChoice::Fail, PaymentStatus::FailPayment) => Ok(urls.fail),
            (_, status) if status.is_paid() => Err(CheckoutRefusal::Finished(
                status,
                "this payment has already been paid",
            )),
            (_, PaymentStatus::QuitPayment) => Err(CheckoutRefusal::Finished(
                PaymentStatus::QuitPayment,
                "the buyer canceled this payment",
            )),
            (_, status) => Err(CheckoutRefusal::Finished(status, "this payment has failed")),
        }
    }

    fn approve_response(&self, payment: &Payment) -> ApproveResponse {
        ApproveResponse {
            aid: payment.aid.clone().unwrap_or_default(),
            tid: payment.tid.clone(),
            cid: payment.cid.clone(),
            sid: payment.sid.clone(),
            partner_order_id: payment.partner_order_id.clone(),
            partner_user_id: payment.partner_user_id.clone(),
            payment_method_type: "MONEY".into(),
            item_name: payment.item_name.clone(),
            item_code: payment.item_code.clone(),
            quantity: payment.quantity,
            amount: payment.amount,
            created_at: kakao_time(payment.created_at),
            approved_at: payment.approved_at.map(kakao_time).unwrap_or_default(),
        }
    }

    fn record(&mut self, mut entry: LedgerEntry) {
        entry.sequence = self.ledger.len() as u64 + 1;
        self.ledger.push(entry);
    }

    /// Marks `tid` paid: aid, SID for the subscription CID, ledger entry.
    fn settle(&mut self, tid: &str, endpoint: Endpoint, now: DateTime<Utc>) -> ApproveResponse {
        let aid = self.new_id('A');
        // A subscription-CID approval issues the SID; a charge with a SID keeps its SID.
        let issues_sid = endpoint == Endpoint::Approve
            && self
                .payments
                .get(tid)
                .is_some_and(|payment| payment.cid == self.settings.subscription_cid);
        let new_sid = issues_sid.then(|| self.new_id('S'));
        let Some(payment) = self.payments.get_mut(tid) else {
            unreachable!("settle is called with a tid the caller just found");
        };
        payment.status = PaymentStatus::SuccessPayment;
        payment.aid = Some(aid.clone());
        payment.approved_at = Some(now);
        payment.actions.push(ActionRecord {
            aid: aid.clone(),
            at: now,
            amount: payment.amount.total,
            kind: "PAYMENT",
        });
        if let Some(new_sid) = new_sid {
            payment.sid = Some(new_sid.clone());
            self.subscriptions.insert(
                new_sid.clone(),
                SubscriptionRecord {
                    sid: new_sid,
                    cid: payment.cid.clone(),
                    partner_user_id: payment.partner_user_id.clone(),
                    status: SidStatus::Active,
                    first_tid: payment.tid.clone(),
                    item_name: payment.item_name.clone(),
                    charges: 0,
                    created_at: now,
                    last_approved_at: None,
                    inactivated_at: None,
                },
            );
        }
        let payment = payment.clone();
        if let Some(subscription) = payment
            .sid
            .as_deref()
            .and_then(|sid| self.subscriptions.get_mut(sid))
        {
            subscription.charges += 1;
            subscription.last_approved_at = Some(now);
        }
        self.record(LedgerEntry {
            sequence: 0,
            kind: EntryKind::Charge,
            endpoint,
            cid: payment.cid.clone(),
            tid: payment.tid.clone(),
            aid,
            sid: payment.sid.clone(),
            partner_order_id: payment.partner_order_id.clone(),
            partner_user_id: payment.partner_user_id.clone(),
            amount: payment.amount.total,
            tax_free_amount: payment.amount.tax_free,
            vat_amount: payment.amount.vat,
            at: now,
        });
        self.approve_response(&payment)
    }

    /// `POST /online/v1/payment/approve`
    pub fn approve(
        &mut self,
        request: ApproveRequest,
        now: DateTime<Utc>,
    ) -> Result<ApproveResponse, KakaoError> {
        required("cid", &request.cid)?;
        required("tid", &request.tid)?;
        required("partner_order_id", &request.partner_order_id)?;
        required("partner_user_id", &request.partner_user_id)?;
        required("pg_token", &request.pg_token)?;
        let payment = self.payment_of(&request.cid, &request.tid, now)?;
        if payment.partner_order_id != request.partner_order_id
            || payment.partner_user_id != request.partner_user_id
        {
            return Err(KakaoError::invalid(
                "partner_order_id or partner_user_id does not match the tid",
            ));
        }
        match payment.status {
            PaymentStatus::Ready => Err(KakaoError::refused(
                code::NOT_AUTHORIZED_BY_BUYER,
                "NOT_AUTHORIZED",
                "the buyer has not approved this payment yet",
            )),
            PaymentStatus::AuthPassword => {
                if payment.pg_token.as_deref() != Some(request.pg_token.as_str()) {
                    return Err(KakaoError::refused(
                        code::INVALID_PG_TOKEN,
                        "INVALID_PG_TOKEN",
                        "pg_token does not match this payment",
                    ));
                }
                Ok(self.settle(&request.tid, Endpoint::Approve, now))
            }
            status if status.is_paid() => Err(KakaoError::refused(
                code::ALREADY_APPROVED,
                "ALREADY_APPROVED",
                "this payment has already been approved",
            )),
            PaymentStatus::FailPayment if payment.expired => Err(KakaoError::refused(
                code::PAYMENT_EXPIRED,
                "EXPIRED",
                "the buyer did not approve in time; the payment has expired",
            )),
            PaymentStatus::QuitPayment => Err(KakaoError::refused(
                code::PAYMENT_ABORTED,
                "CANCELED_BY_BUYER",
                "the buyer canceled this payment",
            )),
            _ => Err(KakaoError::refused(
                code::PAYMENT_ABORTED,
                "FAILED",
                "this payment has failed",
            )),
        }
    }

    /// `POST /online/v1/payment/subscription`. `decline` is an injected decline: it applies only
    /// when the call would charge, never to a repeat of a charge already made.
    pub fn charge_subscription(
        &mut self,
        request: SubscriptionRequest,
        decline: bool,
        now: DateTime<Utc>,
    ) -> Result<ApproveResponse, KakaoError> {
        required("cid", &request.cid)?;
        required("sid", &request.sid)?;
        required("partner_order_id", &request.partner_order_id)?;
        required("partner_user_id", &request.partner_user_id)?;
        required("item_name", &request.item_name)?;
        self.check_cid(&request.cid)?;
        if request.cid != self.settings.subscription_cid {
            return Err(KakaoError::invalid(format!(
                "cid `{}` cannot charge a SID",
                request.cid
            )));
        }
        let amount = amounts(
            request.quantity,
            request.total_amount,
            request.tax_free_amount,
            request.vat_amount,
        )?;
        let key = (request.cid.clone(), request.partner_order_id.clone());
        if let Some(first) = self
            .charges
            .get(&key)
            .and_then(|tid| self.payments.get(tid))
        {
            if first.sid.as_deref() != Some(request.sid.as_str())
                || first.partner_user_id != request.partner_user_id
                || first.amount.total != amount.total
                || first.amount.tax_free != amount.tax_free
            {
                return Err(reused_with_other_parameters());
            }
            return Ok(self.approve_response(first));
        }
        let subscription = self
            .subscriptions
            .get(&request.sid)
            .filter(|subscription| subscription.cid == request.cid)
            .ok_or_else(|| KakaoError::declined("INVALID_SID", "no such SID for this cid"))?;
        if subscription.partner_user_id != request.partner_user_id {
            return Err(KakaoError::invalid(
                "partner_user_id does not match the SID",
            ));
        }
        if subscription.status == SidStatus::Inactive {
            return Err(KakaoError::declined(
                "INACTIVE_SID",
                "the SID is inactive and cannot be charged",
            ));
        }
        if decline {
            return Err(KakaoError::declined(
                "DECLINED",
                "the payment was declined: insufficient balance (injected by the sandbox)",
            ));
        }
        let tid = self.new_id('T');
        self.payments.insert(
            tid.clone(),
            Payment {
                tid: tid.clone(),
                cid: request.cid,
                partner_order_id: request.partner_order_id,
                partner_user_id: request.partner_user_id,
                item_name: request.item_name,
                item_code: request.item_code,
                quantity: request.quantity,
                amount,
                urls: None,
                status: PaymentStatus::Ready,
                expired: false,
                pg_token: None,
                aid: None,
                sid: Some(request.sid),
                created_at: now,
                approved_at: None,
                canceled_at: None,
                canceled: Amount::default(),
                actions: Vec::new(),
            },
        );
        self.charges.insert(key, tid.clone());
        Ok(self.settle(&tid, Endpoint::Subscription, now))
    }

    /// `POST /online/v1/payment/cancel`: refunds part or all of what is left of a payment.
    pub fn cancel(
        &mut self,
        request: CancelRequest,
        now: DateTime<Utc>,
    ) -> Result<CancelResponse, KakaoError> {
        required("cid", &request.cid)?;
        required("tid", &request.tid)?;
        if request.cancel_amount <= 0 {
            return Err(KakaoError::invalid("cancel_amount must be greater than 0"));
        }
        if !(0..=request.cancel_amount).contains(&request.cancel_tax_free_amount) {
            return Err(KakaoError::invalid(
                "cancel_tax_free_amount must be between 0 and cancel_amount",
            ));
        }
        let aid = self.new_id('A');
        let payment = self.payment_of(&request.cid, &request.tid, now)?;
        if !payment.status.is_paid() {
            return Err(KakaoError::refused(
                code::NOT_APPROVED,
                "NOT_APPROVED",
                "this payment was never approved and cannot be canceled",
            ));
        }
        let available = payment.amount.minus(payment.canceled);
        let exceeded = || {
            KakaoError::refused(
                code::CANCEL_AMOUNT_EXCEEDED,
                "CANCEL_AMOUNT_EXCEEDED",
                format!(
                    "cancel amount exceeds the cancelable amount ({} left, {} of it tax-free)",
                    available.total, available.tax_free
                ),
            )
        };
        if request.cancel_amount > available.total
            || request.cancel_tax_free_amount > available.tax_free
        {
            return Err(exceeded());
        }
        let taxable = request.cancel_amount - request.cancel_tax_free_amount;
        // The last cancel takes exactly the VAT left, so a payment cancelled in parts ends at 0.
        let vat = match request.cancel_vat_amount {
            Some(vat) => vat,
            None if request.cancel_amount == available.total => available.vat,
            None => default_vat(taxable).min(available.vat),
        };
        if vat < 0 || vat > taxable {
            return Err(KakaoError::invalid(
                "cancel_vat_amount must be between 0 and cancel_amount - cancel_tax_free_amount",
            ));
        }
        if vat > available.vat {
            return Err(exceeded());
        }
        let refunded = Amount::new(request.cancel_amount, request.cancel_tax_free_amount, vat);
        payment.canceled = payment.canceled.plus(refunded);
        payment.canceled_at = Some(now);
        payment.status = if payment.canceled.total == payment.amount.total {
            PaymentStatus::CancelPayment
        } else {
            PaymentStatus::PartCancelPayment
        };
        payment.actions.push(ActionRecord {
            aid: aid.clone(),
            at: now,
            amount: refunded.total,
            kind: "CANCEL",
        });
        let payment = payment.clone();
        self.record(LedgerEntry {
            sequence: 0,
            kind: EntryKind::Cancel,
            endpoint: Endpoint::Cancel,
            cid: payment.cid.clone(),
            tid: payment.tid.clone(),
            aid: aid.clone(),
            sid: payment.sid.clone(),
            partner_order_id: payment.partner_order_id.clone(),
            partner_user_id: payment.partner_user_id.clone(),
            amount: refunded.total,
            tax_free_amount: refunded.tax_free,
            vat_amount: refunded.vat,
            at: now,
        });
        Ok(CancelResponse {
            aid,
            tid: payment.tid.clone(),
            cid: payment.cid.clone(),
            status: payment.status.as_str().to_owned(),
            partner_order_id: payment.partner_order_id.clone(),
            partner_user_id: payment.partner_user_id.clone(),
            payment_method_type: "MONEY".into(),
            item_name: payment.item_name.clone(),
            item_code: payment.item_code.clone(),
            quantity: payment.quantity,
            amount: payment.amount,
            approved_cancel_amount: refunded,
            canceled_amount: payment.canceled,
            cancel_available_amount: payment.amount.minus(payment.canceled),
            created_at: kakao_time(payment.created_at),
            approved_at: payment.approved_at.map(kakao_time).unwrap_or_default(),
            canceled_at: kakao_time(now),
        })
    }

    /// `POST /online/v1/payment/manage/subscription/inactive`
    pub fn inactivate(
        &mut self,
        request: InactiveRequest,
        now: DateTime<Utc>,
    ) -> Result<InactiveResponse, KakaoError> {
        required("cid", &request.cid)?;
        required("sid", &request.sid)?;
        let subscription = self
            .subscriptions
            .get_mut(&request.sid)
            .filter(|subscription| subscription.cid == request.cid)
            .ok_or_else(|| KakaoError::invalid("no such SID for this cid"))?;
        if subscription.status == SidStatus::Active {
            subscription.status = SidStatus::Inactive;
            subscription.inactivated_at = Some(now);
        }
        Ok(InactiveResponse {
            cid: subscription.cid.clone(),
            sid: subscription.sid.clone(),
            status: "INACTIVE".into(),
            created_at: kakao_time(subscription.created_at),
            last_approved_at: subscription.last_approved_at.map(kakao_time),
            inactivated_at: kakao_time(subscription.inactivated_at.unwrap_or(now)),
        })
    }

    /// `POST /online/v1/payment/order`
    pub fn lookup(
        &mut self,
        request: OrderRequest,
        now: DateTime<Utc>,
    ) -> Result<OrderResponse, KakaoError> {
        required("cid", &request.cid)?;
        required("tid", &request.tid)?;
        let payment = self.payment_of(&request.cid, &request.tid, now)?;
        Ok(OrderResponse {
            tid: payment.tid.clone(),
            cid: payment.cid.clone(),
            status: payment.status.as_str().to_owned(),
            sid: payment.sid.clone(),
            partner_order_id: payment.partner_order_id.clone(),
            partner_user_id: payment.partner_user_id.clone(),
            payment_method_type: payment.status.is_paid().then(|| "MONEY".to_owned()),
            item_name: payment.item_name.clone(),
            item_code: payment.item_code.clone(),
            quantity: payment.quantity,
            amount: payment.amount,
            canceled_amount: payment.canceled,
            cancel_available_amount: if payment.status.is_paid() {
                payment.amount.minus(payment.canceled)
            } else {
                Amount::default()
            },
            created_at: kakao_time(payment.created_at),
            approved_at: payment.approved_at.map(kakao_time),
            canceled_at: payment.canceled_at.map(kakao_time),
            payment_action_details: payment
                .actions
                .iter()
                .map(|action| PaymentAction {
                    aid: action.aid.clone(),
                    approved_at: kakao_time(action.at),
                    amount: action.amount,
                    point_amount: 0,
                    discount_amount: 0,
                    green_deposit: 0,
                    payment_action_type: action.kind.to_owned(),
                    payload: String::new(),
                })
                .collect(),
        })
    }

    /// The ledger entries matching `filter`, oldest first, with their sums.
    pub fn ledger(&self, filter: &LedgerFilter) -> Ledger {
        let entries: Vec<LedgerEntry> = self
            .ledger
            .iter()
            .filter(|entry| filter.matches(entry))
            .cloned()
            .collect();
        let sum = |kind: EntryKind| {
            entries
                .iter()
                .filter(|entry| entry.kind == kind)
                .fold((0_u64, 0_i64), |(count, amount), entry| {
                    (count + 1, amount + entry.amount)
                })
        };
        let (charges, charged_amount) = sum(EntryKind::Charge);
        let (cancels, canceled_amount) = sum(EntryKind::Cancel);
        Ledger {
            entries,
            charges,
            cancels,
            charged_amount,
            canceled_amount,
            net_amount: charged_amount - canceled_amount,
        }
    }

    /// The SIDs matching `filter`, oldest first.
    pub fn subscriptions(&self, filter: &SubscriptionFilter) -> Vec<SubscriptionRecord> {
        let mut records: Vec<SubscriptionRecord> = self
            .subscriptions
            .values()
            .filter(|record| filter.sid.as_deref().is_none_or(|sid| sid == record.sid))
            .filter(|record| {
                filter
                    .partner_user_id
                    .as_deref()
                    .is_none_or(|user| user == record.partner_user_id)
            })
            .filter(|record| filter.status.is_none_or(|status| status == record.status))
            .cloned()
            .collect();
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.sid.cmp(&b.sid)));
        records
    }
}

/// `approval_url` with `pg_token` added to its query, before any fragment.
pub fn with_pg_token(approval_url: &str, pg_token: &str) -> String {
    let (base, fragment) = match approval_url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (approval_url, None),
    };
    let separator = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    let mut location = format!("{base}{separator}pg_token={pg_token}");
    if let Some(fragment) = fragment {
        location.push('#');
        location.push_str(fragment);
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_TIME: &str = "TC0ONETIME";
    const SUBSCRIPTION: &str = "TCSUBSCRIP";

    fn books() -> Books {
        Books::new(BooksSettings {
            one_time_cid: ONE_TIME.into(),
            subscription_cid: SUBSCRIPTION.into(),
            public_url: "http://127.0.0.1:1".into(),
            ready_ttl: chrono::Duration::minutes(15),
        })
    }

    fn ready_request(cid: &str, order: &str, total: i64) -> ReadyRequest {
        ReadyRequest {
            cid: cid.into(),
            partner_order_id: order.into(),
            partner_user_id: "user-1".into(),
            item_name: "Vitamin C".into(),
            item_code: None,
            quantity: 1,
            total_amount: total,
            tax_free_amount: 0,
            vat_amount: None,
            approval_url: "https://shop.test/approve?order=1".into(),
            cancel_url: "https://shop.test/cancel".into(),
            fail_url: "https://shop.test/fail".into(),
        }
    }

    fn pg_token_of(location: &str) -> String {
        location
            .split("pg_token=")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect()
    }

    /// Ready, buyer approval and approve; the approval's answer.
    fn paid(books: &mut Books, cid: &str, order: &str, total: i64) -> ApproveResponse {
        let now = Utc::now();
        let ready = books.ready(ready_request(cid, order, total), now).unwrap();
        let location = books
            .buyer_chooses(&ready.tid, BuyerChoice::Approve, now)
            .unwrap();
        books
            .approve(
                ApproveRequest {
                    cid: cid.into(),
                    tid: ready.tid,
                    partner_order_id: order.into(),
                    partner_user_id: "user-1".into(),
                    pg_token: pg_token_of(&location),
                },
                now,
            )
            .unwrap()
    }

    #[test]
    fn the_pg_token_goes_into_the_query_wherever_the_url_stands() {
        let cases = [
            ("https://a.test/ok", "https://a.test/ok?pg_token=X"),
            ("https://a.test/ok?o=1", "https://a.test/ok?o=1&pg_token=X"),
            ("https://a.test/ok?", "https://a.test/ok?pg_token=X"),
            ("https://a.test/ok?o=1&", "https://a.test/ok?o=1&pg_token=X"),
            ("https://a.test/ok#top", "https://a.test/ok?pg_token=X#top"),
            (
                "https://a.test/ok?o=1#top",
                "https://a.test/ok?o=1&pg_token=X#top",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_pg_token(url, "X"), expected, "{url}");
        }
    }

    #[test]
    fn kakao_time_is_korean_time_without_a_zone() {
        let at = DateTime::parse_from_rfc3339("2026-01-31T20:30:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(kakao_time(at), "2026-02-01T05:30:05");
    }

    #[test]
    fn amounts_are_validated_and_vat_defaults_to_a_tenth_of_the_net_price() {
        assert_eq!(amounts(1, 11_000, 0, None).unwrap().vat, 1_000);
        assert_eq!(amounts(1, 2_200, 200, None).unwrap().vat, 182);
        assert_eq!(amounts(2, 1, 1, None).unwrap(), Amount::new(1, 1, 0));
        assert_eq!(amounts(1, 5_000, 0, Some(0)).unwrap().vat, 0);
        for (quantity, total, tax_free, vat) in [
            (0, 100, 0, None),
            (1, 0, 0, None),
            (1, -5, 0, None),
            (1, 100, 101, None),
            (1, 100, -1, None),
            (1, 100, 50, Some(51)),
            (1, 100, 0, Some(-1)),
        ] {
            let error = amounts(quantity, total, tax_free, vat).unwrap_err();
            assert_eq!(error.body.error_code, code::INVALID_PARAMETER);
        }
    }

    #[test]
    fn a_repeated_ready_answers_the_pending_tid_and_refuses_other_amounts() {
        let mut books = books();
        let now = Utc::now();
        let first = books
            .ready(ready_request(ONE_TIME, "o-1", 1_000), now)
            .unwrap();
        let again = books
            .ready(ready_request(ONE_TIME, "o-1", 1_000), now)
            .unwrap();
        assert_eq!(first, again);
        let error = books
            .ready(ready_request(ONE_TIME, "o-1", 2_000), now)
            .unwrap_err();
        assert_eq!(error.body.error_code, code::INVALID_PARAMETER);
        // Another CID is another namespace.
        let other = books
            .ready(ready_request(SUBSCRIPTION, "o-1", 2_000), now)
            .unwrap();
        assert_ne!(other.tid, first.tid);
    }

    #[test]
    fn after_the_buyer_cancels_a_new_ready_starts_a_new_payment() {
        let mut books = books();
        let now = Utc::now();
        let first = books
            .ready(ready_request(ONE_TIME, "o-2", 1_000), now)
            .unwrap();
        let location = books
            .buyer_chooses(&first.tid, BuyerChoice::Cancel, now)
            .unwrap();
        assert_eq!(location, "https://shop.test/cancel");
        let second = books
            .ready(ready_request(ONE_TIME, "o-2", 1_500), now)
            .unwrap();
        assert_ne!(second.tid, first.tid);
    }

    #[test]
    fn an_expired_payment_cannot_be_approved_and_a_new_ready_replaces_it() {
        let mut books = books();
        let start = Utc::now();
        let ready = books
            .ready(ready_request(ONE_TIME, "o-3", 900), start)
            .unwrap();
        let location = books
            .buyer_chooses(&ready.tid, BuyerChoice::Approve, start)
            .unwrap();
        let later = start + chrono::Duration::minutes(16);
        let error = books
            .approve(
                ApproveRequest {
                    cid: ONE_TIME.into(),
                    tid: ready.tid.clone(),
                    partner_order_id: "o-3".into(),
                    partner_user_id: "user-1".into(),
                    pg_token: pg_token_of(&location),
                },
                later,
            )
            .unwrap_err();
        assert_eq!(error.body.error_code, code::PAYMENT_EXPIRED);
        assert!(matches!(
            books.buyer_chooses(&ready.tid, BuyerChoice::Approve, later),
            Err(CheckoutRefusal::Finished(PaymentStatus::FailPayment, _))
        ));
        let renewed = books
            .ready(ready_request(ONE_TIME, "o-3", 900), later)
            .unwrap();
        assert_ne!(renewed.tid, ready.tid);
        assert_eq!(books.ledger(&LedgerFilter::default()).charges, 0);
    }

    #[test]
    fn the_buyer_page_moves_only_along_legal_transitions() {
        let mut books = books();
        let now = Utc::now();
        let approved = paid(&mut books, ONE_TIME, "o-4", 1_000);
        assert!(matches!(
            books.buyer_chooses(&approved.tid, BuyerChoice::Cancel, now),
            Err(CheckoutRefusal::Finished(PaymentStatus::SuccessPayment, _))
        ));
        assert!(matches!(
            books.buyer_chooses(&approved.tid, BuyerChoice::Fail, now),
            Err(CheckoutRefusal::Finished(PaymentStatus::SuccessPayment, _))
        ));
        // A reload after paying sends the buyer to the same approval URL again.
        let again = books
            .buyer_chooses(&approved.tid, BuyerChoice::Approve, now)
            .unwrap();
        assert!(again.starts_with("https://shop.test/approve?order=1&pg_token="));

        let failed = books
            .ready(ready_request(ONE_TIME, "o-5", 1_000), now)
            .unwrap();
        assert_eq!(
            books
                .buyer_chooses(&failed.tid, BuyerChoice::Fail, now)
                .unwrap(),
            "https://shop.test/fail"
        );
        assert!(matches!(
            books.buyer_chooses(&failed.tid, BuyerChoice::Approve, now),
            Err(CheckoutRefusal::Finished(PaymentStatus::FailPayment, _))
        ));
        assert_eq!(
            books.buyer_chooses("T-unknown", BuyerChoice::Approve, now),
            Err(CheckoutRefusal::NotFound)
        );
    }

    #[test]
    fn a_subscription_charge_has_no_buyer_page() {
        let mut books = books();
        let now = Utc::now();
        let first = paid(&mut books, SUBSCRIPTION, "s-1", 3_000);
        let charge = books
            .charge_subscription(
                SubscriptionRequest {
                    cid: SUBSCRIPTION.into(),
                    sid: first.sid.clone().unwrap(),
                    partner_order_id: "s-1-cycle-2".into(),
                    partner_user_id: "user-1".into(),
                    item_name: "Vitamin C".into(),
                    item_code: None,
                    quantity: 1,
                    total_amount: 3_000,
                    tax_free_amount: 0,
                    vat_amount: None,
                },
                false,
                now,
            )
            .unwrap();
        assert_eq!(
            books.checkout_view(&charge.tid, now),
            Err(CheckoutRefusal::NotFound)
        );
        let records = books.subscriptions(&SubscriptionFilter::default());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].charges, 2);
        assert_eq!(records[0].first_tid, first.tid);
    }

    #[test]
    fn partial_cancels_split_the_vat_so_the_last_one_ends_at_zero() {
        let mut books = books();
        let now = Utc::now();
        let approved = paid(&mut books, ONE_TIME, "o-6", 10_000);
        assert_eq!(approved.amount.vat, 909);
        let cancel = |books: &mut Books, amount: i64| {
            books.cancel(
                CancelRequest {
                    cid: ONE_TIME.into(),
                    tid: approved.tid.clone(),
                    cancel_amount: amount,
                    cancel_tax_free_amount: 0,
                    cancel_vat_amount: None,
                },
                now,
            )
        };
        let part = cancel(&mut books, 3_333).unwrap();
        assert_eq!(part.status, "PART_CANCEL_PAYMENT");
        assert_eq!(part.approved_cancel_amount.vat, 303);
        let rest = cancel(&mut books, 6_667).unwrap();
        assert_eq!(rest.status, "CANCEL_PAYMENT");
        assert_eq!(rest.cancel_available_amount, Amount::default());
        assert_eq!(rest.canceled_amount, approved.amount);
        let error = cancel(&mut books, 1).unwrap_err();
        assert_eq!(error.body.error_code, code::CANCEL_AMOUNT_EXCEEDED);
        let ledger = books.ledger(&LedgerFilter {
            tid: Some(approved.tid.clone()),
            ..LedgerFilter::default()
        });
        assert_eq!((ledger.charges, ledger.cancels), (1, 2));
        assert_eq!(ledger.net_amount, 0);
    }

    #[test]
    fn ledger_filters_combine() {
        let mut books = books();
        paid(&mut books, ONE_TIME, "o-7", 1_000);
        paid(&mut books, ONE_TIME, "o-8", 2_000);
        let only = books.ledger(&LedgerFilter {
            partner_order_id: Some("o-8".into()),
            kind: Some(EntryKind::Charge),
            ..LedgerFilter::default()
        });
        assert_eq!(only.entries.len(), 1);
        assert_eq!(only.charged_amount, 2_000);
        assert_eq!(only.entries[0].sequence, 2);
        let none = books.ledger(&LedgerFilter {
            partner_order_id: Some("o-8".into()),
            kind: Some(EntryKind::Cancel),
            ..LedgerFilter::default()
        });
        assert!(none.entries.is_empty());
        assert_eq!(books.ledger(&LedgerFilter::default()).net_amount, 3_000);
    }
}
