//! The payment flows: each reads what is recorded, decides with the rules in `domain`, calls
//! the PG (never inside a database transaction), records the answer, then tells the order
//! service. `grpc.rs` and the event handlers call these; nothing here knows about the wire.
//!
//! Crash safety, step by step:
//! - ready: the PG's ready is recorded before it is answered; a ready lost between the PG and
//!   our database is never shown to the buyer, so nobody can pay it (it expires at the PG).
//! - approve: the approval is recorded (APPROVED, SID) in one transaction before the order
//!   service hears of it; `order_confirmed` stays false until it has, and the reconciler
//!   ([`Payments::reconcile`]) repeats `MarkOrderPaid` (idempotent per tid) until then.
//! - charge / refund: the row says "maybe sent" before the PG call; a crash or timeout leaves
//!   an unknown outcome that the next call resolves before sending anything new.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pillivery_platform::auth::Caller;
use pillivery_platform::error::{FieldViolation, Text};
use pillivery_proto::order::OrderStatus;
use tonic::Code;

use crate::clients::{OrderCallError, OrderClient};
use crate::config::{PaymentConfig, StorefrontConfig};
use crate::domain::{
    AbandonKind, AbandonStep, ApproveStep, AttemptSummary, ChargeIdentity, ChargeStep,
    PaymentStatus, ReadyStep, abandon_step, approve_step, next_charge_step, order_partner_id,
    pg_return_url, ready_step, storefront_url,
};
use crate::error::PaymentError;
use crate::provider::{
    Approval, ApproveRequest, CancelRequest, Contract, PaymentProvider, PgState, ProviderError,
    ReadyRequest, SubscriptionChargeRequest,
};
use crate::store::{
    ApprovedPayment, ChargeRecord, ChargeResult, InsertReady, NewCharge, NewPayment, PaymentRecord,
    PaymentStore, now,
};

/// How many unconfirmed payments one reconciler round reports.
const RECONCILE_BATCH: u64 = 100;

/// How often a charge whose row changed under us (a concurrent first call) is read again
/// before answering "in progress".
const CLAIM_ROUNDS: usize = 3;

/// What the flows need from the configuration.
#[derive(Clone, Debug)]
pub struct FlowSettings {
    pub public_base_url: String,
    pub storefront: StorefrontConfig,
    pub ready_ttl: chrono::Duration,
    pub lease_ms: i64,
    pub pg_lookup_timeout: Duration,
}

impl FlowSettings {
    pub fn from_config(config: &PaymentConfig) -> Self {
        Self {
            public_base_url: config.public_base_url.clone(),
            storefront: config.storefront.clone(),
            ready_ttl: config.ready_ttl(),
            lease_ms: config.lease_ms as i64,
            pg_lookup_timeout: config.pg_lookup_timeout(),
        }
    }
}

/// A redirect route's answer: where the buyer goes next, and the payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub redirect_url: String,
    pub payment: PaymentRecord,
}

/// `GetPayment`'s answer: the attempt and the PG's live view (None when it could not be had).
#[derive(Clone, Debug, PartialEq)]
pub struct PaymentView {
    pub payment: PaymentRecord,
    pub pg: Option<serde_json::Value>,
}

/// A renewal charge's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeAnswer {
    Charged {
        tid: String,
        charged_at: DateTime<Utc>,
    },
    Declined {
        code: String,
        message: String,
    },
}

/// What `ChargeSubscription` is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeInput {
    pub subscription_id: i64,
    pub cycle: i32,
    pub amount: i64,
    pub user_id: i64,
    pub origin_order_id: i64,
    pub item_name: String,
    pub quantity: i32,
    pub attempt: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundAnswer {
    pub refunded_amount: i64,
    pub refunded_at: DateTime<Utc>,
}

pub struct Payments {
    store: PaymentStore,
    provider: Arc<dyn PaymentProvider>,
    orders: OrderClient,
    settings: FlowSettings,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn contract(payment: &PaymentRecord) -> Contract {
    if payment.subscription_contract {
        Contract::Subscription
    } else {
        Contract::OneTime
    }
}

fn violation(
    field: &str,
    value: serde_json::Value,
    ko: &'static str,
    en: &'static str,
) -> FieldViolation {
    FieldViolation::new(field, value, Text::new(ko, en))
}

impl Payments {
    pub fn new(
        store: PaymentStore,
        provider: Arc<dyn PaymentProvider>,
        orders: OrderClient,
        settings: FlowSettings,
    ) -> Self {
        Self {
            store,
            provider,
            orders,
            settings,
        }
    }

    pub fn store(&self) -> &PaymentStore {
        &self.store
    }

    // ---- ready ----------------------------------------------------------------------------

    /// Starts paying `order_id` for its owner. `key` is the request's Idempotency-Key.
    pub async fn ready(
        &self,
        caller: &Caller,
        order_id: i64,
        key: Option<&str>,
    ) -> Result<PaymentRecord, PaymentError> {
        if let Some(key) = key
            && let Some(used) = self.store.used_key(caller.user_id, key).await?
        {
            return self
                .replay_key(used.order_id, used.payment_id, order_id)
                .await;
        }
        let order = self.orders.order_for_payment(order_id).await?;
        if order.user_id != caller.user_id {
            return Err(PaymentError::OrderNotFound(order_id));
        }
        let attempts = self.store.attempts(order_id).await?;
        let summaries: Vec<AttemptSummary> = attempts
            .iter()
            .map(|attempt| AttemptSummary {
                payment_id: attempt.payment_id,
                status: attempt.status,
                created_at: attempt.created_at,
            })
            .collect();
        let step = ready_step(&summaries, now(), self.settings.ready_ttl);
        if step == ReadyStep::AlreadyPaid || order.status != OrderStatus::Request {
            return Err(PaymentError::InvalidOrderState(order_id));
        }
        let expire = match step {
            ReadyStep::Reuse(payment_id) => {
                let live = attempts
                    .into_iter()
                    .find(|attempt| attempt.payment_id == payment_id)
                    .ok_or(PaymentError::PaymentNotFound(order_id))?;
                return self.answer_with_key(caller.user_id, key, live).await;
            }
            ReadyStep::New { expire } => expire,
            ReadyStep::AlreadyPaid => return Err(PaymentError::InvalidOrderState(order_id)),
        };
        self.store.expire_ready(&expire).await?;
        let subscription = order.has_subscription_lines;
        let request = ReadyRequest {
            contract: if subscription {
                Contract::Subscription
            } else {
                Contract::OneTime
            },
            partner_order_id: order_partner_id(order_id),
            partner_user_id: caller.user_id.to_string(),
            item_name: order.item_name.clone(),
            quantity: order.total_quantity,
            total_amount: order.total_price,
            approval_url: pg_return_url(&self.settings.public_base_url, order_id, "approve"),
            cancel_url: pg_return_url(&self.settings.public_base_url, order_id, "cancel"),
            fail_url: pg_return_url(&self.settings.public_base_url, order_id, "fail"),
        };
        // Outside any transaction: the PG may take seconds.
        let ready = self
            .provider
            .ready(&request)
            .await
            .map_err(|error| match error {
                // The PG refused the request itself (our parameters): nothing the buyer can
                // retry into success.
                ProviderError::Declined { code, .. } => {
                    tracing::error!(order_id, code, "the PG refused a ready");
                    PaymentError::ApprovalRefused { code }
                }
                other => PaymentError::Pg(other),
            })?;
        let new = NewPayment {
            order_id,
            user_id: caller.user_id,
            subscription_contract: subscription,
            partner_order_id: request.partner_order_id,
            tid: ready.tid,
            amount: order.total_price,
            item_name: order.item_name,
            quantity: order.total_quantity,
            next_redirect_pc_url: ready.next_redirect_pc_url,
            next_redirect_mobile_url: ready.next_redirect_mobile_url,
            next_redirect_app_url: ready.next_redirect_app_url,
            created_at: now(),
        };
        match self.store.insert_ready(&new, key).await? {
            InsertReady::Inserted(record) => {
                tracing::info!(
                    order_id,
                    payment_id = record.payment_id,
                    subscription,
                    "payment ready"
                );
                Ok(*record)
            }
            InsertReady::SlotTaken => {
                // A concurrent ready for the order won; answer its attempt.
                let live = self
                    .store
                    .live_ready(order_id)
                    .await?
                    .ok_or(PaymentError::PaymentInProgress)?;
                self.answer_with_key(caller.user_id, key, live).await
            }
            InsertReady::KeyTaken(used) => {
                self.replay_key(used.order_id, used.payment_id, order_id)
                    .await
            }
        }
    }

    async fn replay_key(
        &self,
        used_for: i64,
        payment_id: i64,
        order_id: i64,
    ) -> Result<PaymentRecord, PaymentError> {
        if used_for != order_id {
            return Err(PaymentError::IdempotencyKeyReused { used_for });
        }
        self.store
            .payment(payment_id)
            .await?
            .ok_or(PaymentError::PaymentNotFound(order_id))
    }

    async fn answer_with_key(
        &self,
        user_id: i64,
        key: Option<&str>,
        record: PaymentRecord,
    ) -> Result<PaymentRecord, PaymentError> {
        let Some(key) = key else {
            return Ok(record);
        };
        match self
            .store
            .remember_key(user_id, key, record.order_id, record.payment_id)
            .await?
        {
            None => Ok(record),
            Some(used) => {
                self.replay_key(used.order_id, used.payment_id, record.order_id)
                    .await
            }
        }
    }

    // ---- approve --------------------------------------------------------------------------

    /// The PG's approval redirect for `order_id` with the buyer's `pg_token`.
    pub async fn approve(&self, order_id: i64, pg_token: &str) -> Result<Redirect, PaymentError> {
        let latest = self.store.latest_attempt(order_id).await?;
        let payment = match approve_step(latest.as_ref().map(|payment| payment.status)) {
            ApproveStep::NotFound => return Err(PaymentError::PaymentNotFound(order_id)),
            ApproveStep::InvalidState => return Err(PaymentError::InvalidPaymentState(order_id)),
            ApproveStep::Replay => {
                let payment = latest.ok_or(PaymentError::PaymentNotFound(order_id))?;
                return Ok(self.approved_redirect(self.tell_order(payment).await));
            }
            ApproveStep::Send => latest.ok_or(PaymentError::PaymentNotFound(order_id))?,
        };
        let pg_token = pg_token.trim();
        if pg_token.is_empty() || pg_token.len() > 255 {
            return Err(PaymentError::Invalid(vec![violation(
                "pg_token",
                serde_json::Value::String(pg_token.to_owned()),
                "pg_token이 필요합니다.",
                "pg_token is required",
            )]));
        }
        let claimed = self
            .store
            .claim_payment(
                payment.payment_id,
                PaymentStatus::Ready,
                now_ms(),
                self.settings.lease_ms,
                Some(pg_token),
            )
            .await?;
        if !claimed {
            // A concurrent approve (a double click) holds it, or it just finished.
            let current = self.store.payment(payment.payment_id).await?;
            return match current {
                Some(current) if current.status == PaymentStatus::Approved => {
                    Ok(self.approved_redirect(self.tell_order(current).await))
                }
                _ => Err(PaymentError::PaymentInProgress),
            };
        }
        let request = ApproveRequest {
            contract: contract(&payment),
            tid: payment.tid.clone(),
            partner_order_id: payment.partner_order_id.clone(),
            partner_user_id: payment.user_id.to_string(),
            pg_token: pg_token.to_owned(),
        };
        let approval = match self.provider.approve(&request).await {
            Ok(approval) => approval,
            Err(error) => return self.approval_failed(&payment, error).await,
        };
        self.settle_approval(payment, approval).await
    }

    /// An approve that did not answer an approval: the PG's lookup says what really happened
    /// (a lost answer, a second approve of an approved tid, a payment the buyer abandoned).
    async fn approval_failed(
        &self,
        payment: &PaymentRecord,
        error: ProviderError,
    ) -> Result<Redirect, PaymentError> {
        let order_id = payment.order_id;
        if let ProviderError::NotSent(_) = error {
            self.store.release_payment(payment.payment_id).await?;
            return Err(PaymentError::Pg(error));
        }
        let lookup = self.provider.lookup(contract(payment), &payment.tid).await;
        match lookup {
            Ok(lookup) => match (lookup.state, lookup.approval) {
                (PgState::Approved, Some(approval)) => {
                    tracing::info!(order_id, "approval settled by a lookup");
                    self.settle_approval(payment.clone(), approval).await
                }
                (PgState::Abandoned, _) => {
                    self.store
                        .record_failed(payment.payment_id, "PG_ABANDONED")
                        .await?;
                    Err(match error {
                        ProviderError::Declined { code, .. } => {
                            PaymentError::ApprovalRefused { code }
                        }
                        _ => PaymentError::InvalidPaymentState(order_id),
                    })
                }
                _ => {
                    self.store.release_payment(payment.payment_id).await?;
                    Err(match error {
                        ProviderError::Declined { code, .. } => {
                            PaymentError::ApprovalRefused { code }
                        }
                        other => PaymentError::Pg(other),
                    })
                }
            },
            Err(lookup_error) => {
                tracing::warn!(order_id, %lookup_error, "cannot settle an approval by lookup");
                self.store.release_payment(payment.payment_id).await?;
                Err(match error {
                    ProviderError::Declined { code, .. } => PaymentError::ApprovalRefused { code },
                    other => PaymentError::Pg(other),
                })
            }
        }
    }

    /// Compares the approved amount with the recorded one; records APPROVED (with the SID of a
    /// subscription contract) or cancels a mismatch at the PG and records FAILED.
    async fn settle_approval(
        &self,
        payment: PaymentRecord,
        approval: Approval,
    ) -> Result<Redirect, PaymentError> {
        let order_id = payment.order_id;
        if approval.amount != payment.amount {
            tracing::error!(
                order_id,
                payment_id = payment.payment_id,
                expected = payment.amount,
                approved = approval.amount,
                "the PG approved another amount than the order total; cancelling it"
            );
            let cancel = CancelRequest {
                contract: contract(&payment),
                tid: payment.tid.clone(),
                cancel_amount: approval.amount,
            };
            let reason = match self.provider.cancel(&cancel).await {
                Ok(_) => "AMOUNT_MISMATCH",
                Err(error) => {
                    tracing::error!(
                        order_id,
                        payment_id = payment.payment_id,
                        %error,
                        "cancelling a mismatched approval failed: refund it by hand"
                    );
                    "AMOUNT_MISMATCH_NOT_CANCELLED"
                }
            };
            self.store.record_failed(payment.payment_id, reason).await?;
            return Err(PaymentError::AmountMismatch {
                order_id,
                expected: payment.amount,
                approved: approval.amount,
            });
        }
        let approved = ApprovedPayment {
            aid: approval.aid,
            // A SID only means something for the subscription contract.
            sid: approval.sid.filter(|_| payment.subscription_contract),
            approved_at: approval.approved_at,
        };
        let recorded = self
            .store
            .record_approved(payment.payment_id, &approved)
            .await?;
        tracing::info!(
            order_id,
            payment_id = recorded.payment_id,
            subscription_key = recorded.sid.is_some(),
            "payment approved"
        );
        Ok(self.approved_redirect(self.tell_order(recorded).await))
    }

    fn approved_redirect(&self, payment: PaymentRecord) -> Redirect {
        Redirect {
            redirect_url: storefront_url(&self.settings.storefront.success_url, payment.order_id),
            payment,
        }
    }

    /// Tells the order service the attempt's status (PAID for APPROVED, REFUNDED for
    /// REFUNDED) unless it has confirmed it already. A failure is left to the reconciler; the
    /// record is answered as it stands.
    async fn tell_order(&self, payment: PaymentRecord) -> PaymentRecord {
        if payment.order_confirmed {
            return payment;
        }
        let told = match payment.status {
            PaymentStatus::Approved => {
                self.orders
                    .mark_paid(
                        payment.order_id,
                        &payment.tid,
                        payment.amount,
                        payment.approved_at.unwrap_or(payment.created_at),
                    )
                    .await
            }
            PaymentStatus::Refunded => {
                self.orders
                    .mark_refunded(payment.order_id, payment.refunded_at.unwrap_or_else(now))
                    .await
            }
            _ => return payment,
        };
        match told {
            Ok(()) => match self
                .store
                .confirm_order(payment.payment_id, payment.status)
                .await
            {
                Ok(()) => PaymentRecord {
                    order_confirmed: true,
                    ..payment
                },
                Err(error) => {
                    tracing::warn!(order_id = payment.order_id, %error, "recording the order's confirmation failed");
                    payment
                }
            },
            Err(OrderCallError::Refused { code, message })
                if payment.status == PaymentStatus::Approved
                    && code == Code::FailedPrecondition =>
            {
                // The order can no longer be paid (it was cancelled, e.g. unpaid for too long,
                // while the buyer was approving): give the money back.
                tracing::error!(
                    order_id = payment.order_id,
                    payment_id = payment.payment_id,
                    message,
                    "the order refused a payment it no longer accepts; refunding it"
                );
                match self.refund_payment(payment.clone()).await {
                    Ok(refunded) => {
                        // Nothing to tell: the order is not REFUND_PENDING.
                        if let Err(error) = self
                            .store
                            .confirm_order(refunded.payment_id, PaymentStatus::Refunded)
                            .await
                        {
                            tracing::warn!(%error, "recording an orphan refund's confirmation failed");
                        }
                        refunded
                    }
                    Err(error) => {
                        tracing::error!(order_id = payment.order_id, %error, "refunding an orphan payment failed; the reconciler retries");
                        payment
                    }
                }
            }
            Err(error) => {
                tracing::warn!(
                    order_id = payment.order_id,
                    status = payment.status.as_str(),
                    %error,
                    "the order service has not confirmed the payment yet; the reconciler retries"
                );
                payment
            }
        }
    }

    /// One round of the reconciler: every APPROVED / REFUNDED attempt the order service has
    /// not confirmed is reported again. Answers how many are still unconfirmed.
    pub async fn reconcile(&self) -> Result<usize, PaymentError> {
        let pending = self.store.unconfirmed(RECONCILE_BATCH).await?;
        let mut left = 0;
        for payment in pending {
            if !self.tell_order(payment).await.order_confirmed {
                left += 1;
            }
        }
        Ok(left)
    }

    // ---- cancel / fail ------------------------------------------------------------------

    /// The buyer left the PG's page by cancelling, or the payment failed there.
    pub async fn abandon(
        &self,
        order_id: i64,
        kind: AbandonKind,
    ) -> Result<Redirect, PaymentError> {
        let latest = self.store.latest_attempt(order_id).await?;
        let page = match kind {
            AbandonKind::Cancel => &self.settings.storefront.cancel_url,
            AbandonKind::Fail => &self.settings.storefront.fail_url,
        };
        let redirect = |payment: PaymentRecord| Redirect {
            redirect_url: storefront_url(page, order_id),
            payment,
        };
        let payment = match abandon_step(latest.as_ref().map(|payment| payment.status), kind) {
            AbandonStep::NotFound => return Err(PaymentError::PaymentNotFound(order_id)),
            AbandonStep::InvalidState => return Err(PaymentError::InvalidPaymentState(order_id)),
            AbandonStep::Replay => {
                return Ok(redirect(
                    latest.ok_or(PaymentError::PaymentNotFound(order_id))?,
                ));
            }
            AbandonStep::Apply => latest.ok_or(PaymentError::PaymentNotFound(order_id))?,
        };
        let changed = self
            .store
            .record_abandoned(payment.payment_id, kind.target(), now(), now_ms())
            .await?;
        let current = self
            .store
            .payment(payment.payment_id)
            .await?
            .ok_or(PaymentError::PaymentNotFound(order_id))?;
        if !changed && current.status != kind.target() {
            // An approval holds it or it moved on: a stray redirect must not undo it.
            return Err(if current.status == PaymentStatus::Ready {
                PaymentError::PaymentInProgress
            } else {
                PaymentError::InvalidPaymentState(order_id)
            });
        }
        tracing::info!(
            order_id,
            status = current.status.as_str(),
            "payment abandoned by the buyer"
        );
        Ok(redirect(current))
    }

    // ---- lookup ---------------------------------------------------------------------------

    pub async fn get(&self, caller: &Caller, order_id: i64) -> Result<PaymentView, PaymentError> {
        let payment = self
            .store
            .latest_attempt(order_id)
            .await?
            .filter(|payment| payment.user_id == caller.user_id || caller.is_admin())
            .ok_or(PaymentError::PaymentNotFound(order_id))?;
        // Decoration only: a slow or failing PG costs the customer at most this deadline.
        let pg = match tokio::time::timeout(
            self.settings.pg_lookup_timeout,
            self.provider.lookup(contract(&payment), &payment.tid),
        )
        .await
        {
            Ok(Ok(lookup)) => Some(lookup.raw),
            Ok(Err(error)) => {
                tracing::debug!(order_id, %error, "PG lookup failed");
                None
            }
            Err(_) => None,
        };
        Ok(PaymentView { payment, pg })
    }

    // ---- renewal charges ------------------------------------------------------------------

    /// Charges one renewal cycle, exactly once per (subscription, cycle).
    pub async fn charge(&self, input: &ChargeInput) -> Result<ChargeAnswer, PaymentError> {
        validate_charge(input)?;
        let identity = ChargeIdentity {
            subscription_id: input.subscription_id,
            cycle: input.cycle,
        };
        let attempt = input.attempt.max(1);
        let mut record = self
            .store
            .charge_or_insert(&NewCharge {
                identity,
                user_id: input.user_id,
                origin_order_id: input.origin_order_id,
                amount: input.amount,
                item_name: input.item_name.clone(),
                quantity: i64::from(input.quantity),
                attempt,
            })
            .await?;
        if record.amount != input.amount
            || record.user_id != input.user_id
            || record.origin_order_id != input.origin_order_id
        {
            return Err(PaymentError::ChargeMismatch {
                subscription_id: input.subscription_id,
                cycle: input.cycle,
            });
        }
        for _ in 0..CLAIM_ROUNDS {
            let link = self
                .store
                .ensure_link(input.subscription_id, input.origin_order_id)
                .await?;
            let key = self.store.key(link.origin_order_id).await?;
            let usable = link.active
                && link.origin_order_id == input.origin_order_id
                && key.as_ref().is_some_and(|key| key.active);
            match next_charge_step(record.recorded(now_ms()), attempt, usable) {
                ChargeStep::Replay => return Ok(charge_answer(&record)),
                ChargeStep::Busy => return Err(PaymentError::ChargeInProgress),
                ChargeStep::Refuse if !link.active => {
                    return Err(PaymentError::SubscriptionInactive(input.subscription_id));
                }
                ChargeStep::Refuse => {
                    return Err(PaymentError::SubscriptionKeyMissing(input.origin_order_id));
                }
                ChargeStep::Send { resolving } => {
                    let Some(key) = key else {
                        return Err(PaymentError::SubscriptionKeyMissing(input.origin_order_id));
                    };
                    let owner = uuid::Uuid::new_v4().to_string();
                    let claimed = self
                        .store
                        .claim_charge(&record, &owner, attempt, now_ms(), self.settings.lease_ms)
                        .await?;
                    if !claimed {
                        record = self
                            .store
                            .charge(identity)
                            .await?
                            .ok_or(PaymentError::ChargeInProgress)?;
                        continue;
                    }
                    if resolving {
                        tracing::info!(
                            subscription_id = input.subscription_id,
                            cycle = input.cycle,
                            "resolving a charge whose outcome is unknown by sending it again"
                        );
                    }
                    return self.send_charge(&record, &owner, &key.sid).await;
                }
            }
        }
        Err(PaymentError::ChargeInProgress)
    }

    /// Sends a claimed charge and records the PG's answer before returning it.
    async fn send_charge(
        &self,
        record: &ChargeRecord,
        owner: &str,
        sid: &str,
    ) -> Result<ChargeAnswer, PaymentError> {
        let request = SubscriptionChargeRequest {
            sid: sid.to_owned(),
            partner_order_id: record.partner_order_id.clone(),
            partner_user_id: record.user_id.to_string(),
            item_name: record.item_name.clone(),
            quantity: record.quantity,
            total_amount: record.amount,
        };
        let identity = record.identity;
        let result = match self.provider.charge_subscription(&request).await {
            Ok(approval) => {
                if approval.amount != record.amount {
                    tracing::error!(
                        subscription_id = identity.subscription_id,
                        cycle = identity.cycle,
                        expected = record.amount,
                        charged = approval.amount,
                        "the PG charged another amount than asked"
                    );
                }
                ChargeResult::Charged {
                    tid: approval.tid,
                    aid: approval.aid,
                    charged_at: approval.approved_at,
                }
            }
            Err(ProviderError::Declined { code, message }) => {
                tracing::info!(
                    subscription_id = identity.subscription_id,
                    cycle = identity.cycle,
                    code,
                    "renewal charge declined"
                );
                ChargeResult::Declined { code, message }
            }
            Err(error @ ProviderError::NotSent(_)) => {
                // Certainly not sent this time: the row is as unknown as it was before.
                self.store
                    .release_charge(record.charge_id, owner, record.maybe_sent)
                    .await?;
                return Err(PaymentError::Pg(error));
            }
            Err(error @ ProviderError::Unknown(_)) => {
                tracing::warn!(
                    subscription_id = identity.subscription_id,
                    cycle = identity.cycle,
                    %error,
                    "renewal charge outcome unknown; the next call resolves it"
                );
                self.store
                    .release_charge(record.charge_id, owner, true)
                    .await?;
                return Err(PaymentError::Pg(error));
            }
        };
        let recorded = self.store.finish_charge(record.charge_id, &result).await?;
        Ok(charge_answer(&recorded))
    }

    // ---- refunds --------------------------------------------------------------------------

    /// Refunds a paid order in full and tells the order service. Repeats answer the refund.
    pub async fn refund(&self, order_id: i64) -> Result<RefundAnswer, PaymentError> {
        let paid = self
            .store
            .attempts(order_id)
            .await?
            .into_iter()
            .find(|attempt| attempt.status.is_paid())
            .ok_or(PaymentError::PaymentNotFound(order_id))?;
        let refunded = match paid.status {
            PaymentStatus::Refunded => paid,
            _ => self.refund_payment(paid).await?,
        };
        let refunded = self.tell_order(refunded).await;
        Ok(RefundAnswer {
            refunded_amount: refunded.refunded_amount,
            refunded_at: refunded.refunded_at.unwrap_or_else(now),
        })
    }

    /// APPROVED → REFUNDED at the PG, then recorded. The PG's cancel is not idempotent (each
    /// call refunds again), so an earlier cancel whose outcome is unknown is settled by a
    /// lookup before anything is sent.
    async fn refund_payment(&self, payment: PaymentRecord) -> Result<PaymentRecord, PaymentError> {
        let order_id = payment.order_id;
        let claimed = self
            .store
            .claim_payment(
                payment.payment_id,
                PaymentStatus::Approved,
                now_ms(),
                self.settings.lease_ms,
                None,
            )
            .await?;
        if !claimed {
            return match self.store.payment(payment.payment_id).await? {
                Some(current) if current.status == PaymentStatus::Refunded => Ok(current),
                _ => Err(PaymentError::PaymentInProgress),
            };
        }
        let payment = self
            .store
            .payment(payment.payment_id)
            .await?
            .ok_or(PaymentError::PaymentNotFound(order_id))?;
        if payment.refund_maybe_sent {
            match self.refunded_at_pg(&payment).await {
                Ok(Some(record)) => return Ok(record),
                Ok(None) => {}
                Err(error) => {
                    self.store.release_payment(payment.payment_id).await?;
                    return Err(error);
                }
            }
        }
        self.store
            .set_refund_maybe_sent(payment.payment_id, true)
            .await?;
        let cancel = CancelRequest {
            contract: contract(&payment),
            tid: payment.tid.clone(),
            cancel_amount: payment.amount,
        };
        match self.provider.cancel(&cancel).await {
            Ok(cancellation) => {
                let record = self
                    .store
                    .record_refunded(
                        payment.payment_id,
                        cancellation.canceled_amount,
                        cancellation.canceled_at,
                    )
                    .await?;
                tracing::info!(
                    order_id,
                    amount = record.refunded_amount,
                    "payment refunded"
                );
                Ok(record)
            }
            Err(ProviderError::Declined { code, .. }) => {
                // Perhaps an earlier cancel did go through (nothing left to cancel).
                if let Ok(Some(record)) = self.refunded_at_pg(&payment).await {
                    return Ok(record);
                }
                tracing::error!(order_id, code, "the PG refused a refund");
                self.store
                    .set_refund_maybe_sent(payment.payment_id, payment.refund_maybe_sent)
                    .await?;
                self.store.release_payment(payment.payment_id).await?;
                Err(PaymentError::RefundRefused { code })
            }
            Err(error @ ProviderError::NotSent(_)) => {
                self.store
                    .set_refund_maybe_sent(payment.payment_id, payment.refund_maybe_sent)
                    .await?;
                self.store.release_payment(payment.payment_id).await?;
                Err(PaymentError::Pg(error))
            }
            Err(error @ ProviderError::Unknown(_)) => {
                self.store.release_payment(payment.payment_id).await?;
                Err(PaymentError::Pg(error))
            }
        }
    }

    /// Whether the PG shows the payment cancelled in full; if so it is recorded REFUNDED.
    async fn refunded_at_pg(
        &self,
        payment: &PaymentRecord,
    ) -> Result<Option<PaymentRecord>, PaymentError> {
        let lookup = self
            .provider
            .lookup(contract(payment), &payment.tid)
            .await
            .map_err(PaymentError::Pg)?;
        if lookup.state == PgState::Canceled || lookup.canceled_amount >= payment.amount {
            let record = self
                .store
                .record_refunded(
                    payment.payment_id,
                    lookup.canceled_amount,
                    lookup.canceled_at.unwrap_or_else(now),
                )
                .await?;
            tracing::info!(order_id = payment.order_id, "refund settled by a lookup");
            return Ok(Some(record));
        }
        Ok(None)
    }

    // ---- subscription keys ----------------------------------------------------------------

    /// Records that `subscription_id` bills `origin_order_id`'s PG key (SubscriptionCreated).
    pub async fn link_subscription(
        &self,
        subscription_id: i64,
        origin_order_id: i64,
    ) -> Result<(), PaymentError> {
        self.store
            .ensure_link(subscription_id, origin_order_id)
            .await?;
        Ok(())
    }

    /// The subscription stops; once no active subscription bills its order's PG key, the key
    /// is deactivated at the PG. One order with two subscription lines has one key (one SID),
    /// which stays active until both are cancelled. Answers whether the key is inactive now.
    pub async fn inactivate_subscription(
        &self,
        subscription_id: i64,
        origin_order_id: i64,
    ) -> Result<bool, PaymentError> {
        let link = self
            .store
            .deactivate_link(subscription_id, origin_order_id)
            .await?;
        let origin = link.origin_order_id;
        if self.store.active_links(origin).await? > 0 {
            return Ok(false);
        }
        let Some(key) = self.store.key(origin).await? else {
            return Ok(true);
        };
        if !key.active {
            return Ok(true);
        }
        match self.provider.inactivate_subscription(&key.sid).await {
            Ok(()) => {}
            // The PG does not know the key (or it is already inactive): it cannot be charged.
            Err(ProviderError::Declined { code, .. }) => {
                tracing::warn!(
                    origin_order_id = origin,
                    code,
                    "the PG refused to inactivate a key; taking it as inactive"
                );
            }
            Err(error) => return Err(PaymentError::Pg(error)),
        }
        self.store.deactivate_key(origin).await?;
        tracing::info!(
            origin_order_id = origin,
            subscription_id,
            "PG subscription key inactivated"
        );
        Ok(true)
    }
}

fn charge_answer(record: &ChargeRecord) -> ChargeAnswer {
    match record.state {
        crate::domain::ChargeState::Declined => ChargeAnswer::Declined {
            code: record.decline_code.clone().unwrap_or_default(),
            message: record.decline_message.clone().unwrap_or_default(),
        },
        _ => ChargeAnswer::Charged {
            tid: record.tid.clone().unwrap_or_default(),
            charged_at: record.charged_at.unwrap_or_else(now),
        },
    }
}

fn validate_charge(input: &ChargeInput) -> Result<(), PaymentError> {
    let mut violations = Vec::new();
    let positive = [
        ("subscriptionId", input.subscription_id),
        ("cycle", i64::from(input.cycle)),
        ("amount", input.amount),
        ("userId", input.user_id),
        ("originOrderId", input.origin_order_id),
        ("quantity", i64::from(input.quantity)),
    ];
    for (field, value) in positive {
        if value <= 0 {
            violations.push(violation(
                field,
                serde_json::json!(value),
                "0보다 커야 합니다.",
                "must be greater than 0",
            ));
        }
    }
    let name = input.item_name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        violations.push(violation(
            "itemName",
            serde_json::Value::String(input.item_name.clone()),
            "1~100자여야 합니다.",
            "must be 1 to 100 characters",
        ));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(PaymentError::Invalid(violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ChargeInput {
        ChargeInput {
            subscription_id: 1,
            cycle: 1,
            amount: 1000,
            user_id: 2,
            origin_order_id: 3,
            item_name: "비타민C".into(),
            quantity: 1,
            attempt: 0,
        }
    }

    #[test]
    fn charge_requests_are_checked_field_by_field() {
        assert!(validate_charge(&input()).is_ok());
        let mut bad = input();
        bad.subscription_id = 0;
        bad.cycle = -1;
        bad.amount = 0;
        bad.item_name = " ".into();
        let Err(PaymentError::Invalid(violations)) = validate_charge(&bad) else {
            panic!("expected violations");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["subscriptionId", "cycle", "amount", "itemName"]);
    }
}
