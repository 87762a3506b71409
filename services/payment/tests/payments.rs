//! The customer's payment flows through the payment service's gRPC API, against the real
//! sandbox PG and a fake order service: ready (ownership, state, idempotency), the approval
//! redirect (amount check, order PAID, repeats), cancel / fail redirects, GetPayment with the
//! PG's live view, refunds, subscription keys and the reconciler.
//!
//! Every scenario runs on SQLite, and on PostgreSQL / MySQL when `PILLIVERY_TEST_POSTGRES_URL` /
//! `PILLIVERY_TEST_MYSQL_URL` name a server.

#[macro_use]
mod common;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Backend, CANCEL_URL, FAIL_URL, Harness, SUCCESS_URL, assert_error, authorized};
use pillivery_proto::order::OrderStatus;
use pillivery_proto::payment as pb;
use pillivery_sandbox_pg::{EntryKind, SidStatus, SubscriptionFilter};
use pillivery_testkit::eventually;
use tonic::Code;

async fn run<F, Fut>(backend: Option<Backend>, test: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = Harness>,
{
    let Some(backend) = backend else { return };
    let harness = Harness::start(&backend).await;
    test(harness).await.stop().await;
}

const USER: i64 = 7;

async fn approve_marks_the_order_paid_once(harness: Harness) -> Harness {
    harness.orders.add(100, USER, 23_000, false);
    let ready = harness.ready(USER, 100, "key-100").await.unwrap();
    assert!(ready.tid.starts_with('T'), "{ready:?}");
    assert!(ready.created_at.is_some());
    let location = harness.buyer(&ready, "approve").await;
    assert!(
        location.starts_with("http://shop.test/api/payments/orders/100/approve?pg_token="),
        "{location}"
    );
    let pg_token = Harness::pg_token(&location);
    let answer = harness.approve(100, &pg_token).await.unwrap();
    assert_eq!(answer.redirect_url, format!("{SUCCESS_URL}?orderId=100"));
    let payment = answer.payment.clone().unwrap();
    assert_eq!(payment.status(), pb::PaymentStatus::Approved);
    assert_eq!((payment.order_id, payment.amount), (100, 23_000));
    assert_eq!(payment.tid, ready.tid);
    assert!(payment.approved_at.is_some());
    let order = harness.orders.order(100);
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.paid_with.as_deref(), Some(ready.tid.as_str()));

    // A browser refresh: the same answer, no second approval at the PG, no second MarkOrderPaid.
    let calls = harness.orders.mark_paid_calls.load(Ordering::SeqCst);
    let again = harness.approve(100, &pg_token).await.unwrap();
    assert_eq!(again, answer);
    assert_eq!(harness.orders.mark_paid_calls.load(Ordering::SeqCst), calls);
    let ledger = harness.ledger_of("order-100");
    assert_eq!((ledger.charges, ledger.charged_amount), (1, 23_000));

    // Paid: no new ready, whatever the key.
    let refused = harness.ready(USER, 100, "key-100-b").await.unwrap_err();
    assert_error(refused, Code::FailedPrecondition, "INVALID_ORDER_STATE");
    harness
}

async fn ready_is_idempotent_and_owned(harness: Harness) -> Harness {
    harness.orders.add(200, USER, 5_000, false);
    harness.orders.add(201, USER, 6_000, false);
    harness.orders.add(202, 99, 6_000, false);
    harness.orders.add(203, USER, 6_000, false);
    harness.orders.set_status(203, OrderStatus::Canceled);
    let first = harness.ready(USER, 200, "same-key").await.unwrap();
    let repeat = harness.ready(USER, 200, "same-key").await.unwrap();
    assert_eq!(first, repeat);
    // Same key, another order: a conflict, not a silent replay.
    let conflict = harness.ready(USER, 201, "same-key").await.unwrap_err();
    assert_error(conflict, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    // Another key while the first attempt is live: the same payable tid, never two.
    let second_key = harness.ready(USER, 200, "other-key").await.unwrap();
    assert_eq!(second_key.tid, first.tid);
    // Someone else's order and an unknown one look the same.
    for order_id in [202, 999] {
        let hidden = harness.ready(USER, order_id, "k").await.unwrap_err();
        assert_error(hidden, Code::NotFound, "ORDER_NOT_FOUND");
    }
    let canceled = harness.ready(USER, 203, "k-203").await.unwrap_err();
    assert_error(canceled, Code::FailedPrecondition, "INVALID_ORDER_STATE");
    // Without a token: 401.
    let anonymous = harness
        .client()
        .ready_payment(pb::ReadyPaymentRequest { order_id: 200 })
        .await
        .unwrap_err();
    assert_error(anonymous, Code::Unauthenticated, "AUTHENTICATION_REQUIRED");
    harness
}

async fn cancel_and_fail_redirects_end_the_attempt(harness: Harness) -> Harness {
    harness.orders.add(300, USER, 9_900, false);
    let ready = harness.ready(USER, 300, "k-300").await.unwrap();
    let location = harness.buyer(&ready, "cancel").await;
    assert_eq!(location, "http://shop.test/api/payments/orders/300/cancel");
    let canceled = harness
        .client()
        .cancel_payment(pb::AbandonPaymentRequest { order_id: 300 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(canceled.redirect_url, format!("{CANCEL_URL}?orderId=300"));
    let payment = canceled.payment.unwrap();
    assert_eq!(payment.status(), pb::PaymentStatus::Canceled);
    assert!(payment.canceled_at.is_some());
    // A reload answers the same; a fail redirect for a cancelled attempt is refused.
    let reload = harness
        .client()
        .cancel_payment(pb::AbandonPaymentRequest { order_id: 300 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reload.payment.unwrap().status(),
        pb::PaymentStatus::Canceled
    );
    let wrong = harness
        .client()
        .fail_payment(pb::AbandonPaymentRequest { order_id: 300 })
        .await
        .unwrap_err();
    assert_error(wrong, Code::FailedPrecondition, "INVALID_PAYMENT_STATE");
    // Approving the cancelled attempt is refused.
    let late = harness.approve(300, "token").await.unwrap_err();
    assert_error(late, Code::FailedPrecondition, "INVALID_PAYMENT_STATE");

    // The buyer tries again: a new attempt with a new tid, which then fails.
    let retry = harness.ready(USER, 300, "k-300-retry").await.unwrap();
    assert_ne!(retry.tid, ready.tid);
    let location = harness.buyer(&retry, "fail").await;
    assert_eq!(location, "http://shop.test/api/payments/orders/300/fail");
    let failed = harness
        .client()
        .fail_payment(pb::AbandonPaymentRequest { order_id: 300 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.redirect_url, format!("{FAIL_URL}?orderId=300"));
    assert_eq!(failed.payment.unwrap().status(), pb::PaymentStatus::Failed);
    assert_eq!(harness.orders.order(300).status, OrderStatus::Request);
    assert_eq!(harness.ledger_of("order-300").charges, 0);
    // Unknown order.
    let unknown = harness
        .client()
        .cancel_payment(pb::AbandonPaymentRequest { order_id: 301 })
        .await
        .unwrap_err();
    assert_error(unknown, Code::NotFound, "PAYMENT_NOT_FOUND");
    harness
}

async fn an_amount_mismatch_is_cancelled_and_refused(harness: Harness) -> Harness {
    harness.orders.add(400, USER, 12_000, false);
    harness
        .provider
        .approve_amount_delta
        .store(-1_000, Ordering::SeqCst);
    let ready = harness.ready(USER, 400, "k-400").await.unwrap();
    let location = harness.buyer(&ready, "approve").await;
    let refused = harness
        .approve(400, &Harness::pg_token(&location))
        .await
        .unwrap_err();
    assert_error(refused, Code::FailedPrecondition, "AMOUNT_MISMATCH");
    harness
        .provider
        .approve_amount_delta
        .store(0, Ordering::SeqCst);
    // The PG's approval was cancelled (for what it said it approved), the order is not paid.
    let ledger = harness.ledger_of("order-400");
    let kinds: Vec<EntryKind> = ledger.entries.iter().map(|entry| entry.kind).collect();
    assert_eq!(kinds, [EntryKind::Charge, EntryKind::Cancel]);
    assert_eq!(harness.orders.order(400).status, OrderStatus::Request);
    assert_eq!(harness.orders.mark_paid_calls.load(Ordering::SeqCst), 0);
    let payment = harness
        .client()
        .get_payment(authorized(
            pb::GetPaymentRequest { order_id: 400 },
            &harness.token(USER),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payment.status(), pb::PaymentStatus::Failed);
    harness
}

async fn get_payment_shows_the_pg_view_to_the_owner(harness: Harness) -> Harness {
    harness.orders.add(500, USER, 3_000, false);
    harness.pay(USER, 500).await;
    let payment = harness
        .client()
        .get_payment(authorized(
            pb::GetPaymentRequest { order_id: 500 },
            &harness.token(USER),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payment.status(), pb::PaymentStatus::Approved);
    let pg = payment.pg.expect("the PG answered");
    assert_eq!(
        pg.fields["status"].kind,
        Some(prost_types::value::Kind::StringValue(
            "SUCCESS_PAYMENT".into()
        ))
    );
    let other = harness
        .client()
        .get_payment(authorized(
            pb::GetPaymentRequest { order_id: 500 },
            &harness.token(USER + 1),
        ))
        .await
        .unwrap_err();
    assert_error(other, Code::NotFound, "PAYMENT_NOT_FOUND");
    // A PG that does not answer in time: the payment as recorded, `pg` null.
    harness
        .sandbox
        .set_faults(pillivery_sandbox_pg::FaultConfig {
            timeout_rate: 1.0,
            timeout_hold_ms: 10_000,
            ..Default::default()
        })
        .unwrap();
    let started = std::time::Instant::now();
    let without_pg = harness
        .client()
        .get_payment(authorized(
            pb::GetPaymentRequest { order_id: 500 },
            &harness.token(USER),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(without_pg.pg, None);
    assert_eq!(without_pg.status(), pb::PaymentStatus::Approved);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    harness.sandbox.set_faults(Default::default()).unwrap();
    harness
}

async fn refunds_reach_refunded_once(harness: Harness) -> Harness {
    harness.orders.add(600, USER, 15_000, false);
    harness.pay(USER, 600).await;
    harness.orders.set_status(600, OrderStatus::RefundPending);
    let refund = harness
        .internal()
        .refund(pb::RefundRequest { order_id: 600 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refund.refunded_amount, 15_000);
    assert_eq!(harness.orders.order(600).status, OrderStatus::Refunded);
    let again = harness
        .internal()
        .refund(pb::RefundRequest { order_id: 600 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, refund);
    let ledger = harness.ledger_of("order-600");
    assert_eq!(
        (ledger.charges, ledger.cancels, ledger.net_amount),
        (1, 1, 0)
    );
    let unpaid = harness
        .internal()
        .refund(pb::RefundRequest { order_id: 601 })
        .await
        .unwrap_err();
    assert_error(unpaid, Code::NotFound, "PAYMENT_NOT_FOUND");
    harness
}

async fn subscription_keys_bill_and_are_deactivated_with_the_last_subscription(
    harness: Harness,
) -> Harness {
    harness.orders.add(700, USER, 30_000, true);
    harness.pay(USER, 700).await;
    let sids = harness.sandbox.subscriptions(&SubscriptionFilter {
        partner_user_id: Some(USER.to_string()),
        ..Default::default()
    });
    assert_eq!(sids.len(), 1, "{sids:?}");
    assert_eq!(sids[0].status, SidStatus::Active);
    // Two subscription lines of one order share its SID.
    for subscription_id in [71, 72] {
        let charged = harness
            .charge(subscription_id, 1, 700, USER, 10_000, 1)
            .await
            .unwrap();
        assert_eq!(charged.outcome(), pb::ChargeOutcome::Charged);
        assert!(!charged.tid.is_empty());
    }
    let first = harness
        .internal()
        .inactivate_subscription(pb::InactivateSubscriptionRequest {
            subscription_id: 71,
            origin_order_id: 700,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.key_inactive, "72 still uses the key");
    let refused = harness
        .charge(71, 2, 700, USER, 10_000, 1)
        .await
        .unwrap_err();
    assert_error(refused, Code::FailedPrecondition, "SUBSCRIPTION_INACTIVE");
    let still = harness.charge(72, 2, 700, USER, 10_000, 1).await.unwrap();
    assert_eq!(still.outcome(), pb::ChargeOutcome::Charged);
    let last = harness
        .internal()
        .inactivate_subscription(pb::InactivateSubscriptionRequest {
            subscription_id: 72,
            origin_order_id: 700,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(last.key_inactive);
    let sid = harness.sandbox.subscriptions(&SubscriptionFilter {
        sid: Some(sids[0].sid.clone()),
        ..Default::default()
    });
    assert_eq!(sid[0].status, SidStatus::Inactive);
    let after = harness
        .charge(72, 3, 700, USER, 10_000, 1)
        .await
        .unwrap_err();
    assert_error(after, Code::FailedPrecondition, "SUBSCRIPTION_INACTIVE");
    // A one-time order has no key to charge.
    harness.orders.add(701, USER, 1_000, false);
    harness.pay(USER, 701).await;
    let no_key = harness
        .charge(73, 1, 701, USER, 1_000, 1)
        .await
        .unwrap_err();
    assert_error(
        no_key,
        Code::FailedPrecondition,
        "SUBSCRIPTION_KEY_INACTIVE",
    );
    harness
}

async fn the_reconciler_tells_the_order_service_after_an_outage(harness: Harness) -> Harness {
    harness.orders.add(800, USER, 4_400, false);
    harness.orders.down.store(true, Ordering::SeqCst);
    // Approved and recorded even though the order service cannot hear it now.
    let answer = harness.pay(USER, 800).await;
    assert_eq!(
        answer.payment.unwrap().status(),
        pb::PaymentStatus::Approved
    );
    assert_eq!(harness.orders.order(800).status, OrderStatus::Request);
    harness.orders.down.store(false, Ordering::SeqCst);
    eventually(
        "the reconciler marks the order paid",
        Duration::from_secs(10),
        || async { (harness.orders.order(800).status == OrderStatus::Paid).then_some(()) },
    )
    .await;
    harness
}

on_every_backend!(
    approve_marks_the_order_paid_once,
    ready_is_idempotent_and_owned,
    cancel_and_fail_redirects_end_the_attempt,
    an_amount_mismatch_is_cancelled_and_refused,
    get_payment_shows_the_pg_view_to_the_owner,
    refunds_reach_refunded_once,
    subscription_keys_bill_and_are_deactivated_with_the_last_subscription,
    the_reconciler_tells_the_order_service_after_an_outage,
);
