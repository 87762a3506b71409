//! The payment service's event consumer (group `payment`, stream `order`) against the real
//! sandbox PG and a fake order service: fabricated order-service events, handed to the handler
//! directly (a second replica's flows over the same database) and published on the bus the
//! running service consumes from.
//!
//! Every scenario runs on SQLite, and on PostgreSQL / MySQL when `PILLIVERY_TEST_POSTGRES_URL` /
//! `PILLIVERY_TEST_MYSQL_URL` name a server.

#[macro_use]
mod common;

use std::future::Future;
use std::time::Duration;

use common::{Backend, Harness, assert_error, order_event};
use payment::events::PaymentEvents;
use pillivery_platform::events::{EventEnvelope, EventHandler, HandlerError, InboxScope};
use pillivery_proto::events as events_pb;
use pillivery_proto::order::OrderStatus;
use pillivery_sandbox_pg::{Endpoint, EndpointSet, FaultConfig, SidStatus, SubscriptionFilter};
use pillivery_testkit::eventually;
use prost::Message;
use sea_orm::DatabaseConnection;
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

const USER: i64 = 9;
const PATIENCE: Duration = Duration::from_secs(20);

fn refund_requested(order_id: i64, amount: i64) -> EventEnvelope {
    order_event(
        "OrderRefundRequested",
        order_id,
        events_pb::OrderRefundRequested {
            order_id,
            user_id: USER,
            amount,
        }
        .encode_to_vec(),
    )
}

fn state(subscription_id: i64, origin_order_id: i64, status: &str) -> events_pb::SubscriptionState {
    events_pb::SubscriptionState {
        subscription_id,
        user_id: USER,
        item_id: 1,
        quantity: 1,
        period_days: 30,
        unit_price: 10_000,
        status: status.to_owned(),
        anchor_date: "2026-01-01".into(),
        next_billing_date: "2026-01-31".into(),
        version: 1,
        origin_order_id,
        ..Default::default()
    }
}

fn created(subscription_id: i64, origin_order_id: i64) -> EventEnvelope {
    order_event(
        "SubscriptionCreated",
        subscription_id,
        events_pb::SubscriptionCreated {
            subscription: Some(state(subscription_id, origin_order_id, "ACTIVE")),
        }
        .encode_to_vec(),
    )
}

fn canceled(subscription_id: i64, origin_order_id: i64) -> EventEnvelope {
    order_event(
        "SubscriptionCanceled",
        subscription_id,
        events_pb::SubscriptionCanceled {
            subscription: Some(state(subscription_id, origin_order_id, "CANCELED")),
            reason: "USER".into(),
        }
        .encode_to_vec(),
    )
}

fn suspended(subscription_id: i64, origin_order_id: i64) -> EventEnvelope {
    order_event(
        "SubscriptionSuspended",
        subscription_id,
        events_pb::SubscriptionSuspended {
            subscription: Some(state(subscription_id, origin_order_id, "SUSPENDED")),
            reason: "PAYMENT_FAILED".into(),
        }
        .encode_to_vec(),
    )
}

/// One delivery of `event` to `handler`, with a fresh inbox scope as the consumer makes.
async fn deliver(
    handler: &PaymentEvents,
    database: &DatabaseConnection,
    event: &EventEnvelope,
) -> Result<(), HandlerError> {
    let scope = InboxScope::new(database.clone(), "payment", &event.event_id);
    handler.handle(event, &scope).await
}

async fn refund_requested_refunds_at_the_pg_once(harness: Harness) -> Harness {
    let (handler, database) = harness.event_handler().await;
    assert!(handler.wants("OrderRefundRequested"));
    assert!(!handler.wants("OrderPaid"), "the catalog's, not ours");
    harness.orders.add(900, USER, 12_000, false);
    harness.pay(USER, 900).await;
    harness.orders.set_status(900, OrderStatus::RefundPending);
    let event = refund_requested(900, 12_000);
    deliver(&handler, &database, &event).await.unwrap();
    // Refunded at the PG and recorded, and the order service told (MarkOrderRefunded).
    let ledger = harness.ledger_of("order-900");
    assert_eq!(
        (ledger.charges, ledger.cancels, ledger.net_amount),
        (1, 1, 0),
        "{ledger:?}"
    );
    assert_eq!(harness.orders.order(900).status, OrderStatus::Refunded);
    let recorded = harness
        .client()
        .get_payment(common::authorized(
            pillivery_proto::payment::GetPaymentRequest { order_id: 900 },
            &harness.token(USER),
        ))
        .await
        .unwrap()
        .into_inner();
    let payment = recorded;
    assert_eq!(
        payment.status(),
        pillivery_proto::payment::PaymentStatus::Refunded
    );
    assert!(payment.canceled_at.is_some());

    // The same event again (a claim after a crash before the inbox row): answered from the
    // record, no second cancel at the PG.
    deliver(&handler, &database, &event).await.unwrap();
    assert_eq!(harness.ledger_of("order-900").cancels, 1);

    // Two deliveries racing (two replicas): one cancel; the loser waits for the lease and
    // retries, or finds the refund done.
    harness.orders.add(901, USER, 8_000, false);
    harness.pay(USER, 901).await;
    harness.orders.set_status(901, OrderStatus::RefundPending);
    let (second, second_database) = harness.event_handler().await;
    let racing = refund_requested(901, 8_000);
    let (one, two) = tokio::join!(
        deliver(&handler, &database, &racing),
        deliver(&second, &second_database, &racing)
    );
    for outcome in [&one, &two] {
        assert!(
            matches!(outcome, Ok(()) | Err(HandlerError::Retryable(_))),
            "{outcome:?}"
        );
    }
    assert!(one.is_ok() || two.is_ok(), "{one:?} {two:?}");
    let ledger = harness.ledger_of("order-901");
    assert_eq!((ledger.cancels, ledger.net_amount), (1, 0), "{ledger:?}");
    assert_eq!(harness.orders.order(901).status, OrderStatus::Refunded);

    // Nothing paid for that order: no retry can help, so the event is dead-lettered at once.
    let unknown = deliver(&handler, &database, &refund_requested(902, 1_000)).await;
    assert!(
        matches!(&unknown, Err(HandlerError::Permanent(reason)) if reason.contains("902")),
        "{unknown:?}"
    );
    // A payload that is not the message: permanent too.
    let garbage = order_event("OrderRefundRequested", 903, vec![0xff; 4]);
    assert!(matches!(
        deliver(&handler, &database, &garbage).await,
        Err(HandlerError::Permanent(_))
    ));
    harness
}

async fn subscription_events_link_and_inactivate_the_sid_with_the_last_subscription(
    harness: Harness,
) -> Harness {
    let (handler, database) = harness.event_handler().await;
    harness.orders.add(910, USER, 20_000, true);
    harness.pay(USER, 910).await;
    let sids = harness.sandbox.subscriptions(&SubscriptionFilter {
        partner_user_id: Some(USER.to_string()),
        ..Default::default()
    });
    assert_eq!(sids.len(), 1, "{sids:?}");
    assert_eq!(sids[0].status, SidStatus::Active);
    let sid = SubscriptionFilter {
        sid: Some(sids[0].sid.clone()),
        ..Default::default()
    };

    // Two subscription lines of order 910: two subscriptions sharing its SID.
    for subscription_id in [91, 92] {
        deliver(&handler, &database, &created(subscription_id, 910))
            .await
            .unwrap();
        let store = payment::store::PaymentStore::new(database.clone());
        let link = store.link(subscription_id).await.unwrap().unwrap();
        assert_eq!((link.origin_order_id, link.active), (910, true));
    }
    // The link is written in the inbox transaction: a redelivery finds the inbox row.
    let again = created(91, 910);
    deliver(&handler, &database, &again).await.unwrap();
    let scope = InboxScope::new(database.clone(), "payment", &again.event_id);
    assert!(scope.begin().await.unwrap().is_none(), "inbox row written");
    deliver(&handler, &database, &again).await.unwrap();

    // The first one ends: the SID still bills the other.
    deliver(&handler, &database, &canceled(91, 910))
        .await
        .unwrap();
    assert_eq!(
        harness.sandbox.subscriptions(&sid)[0].status,
        SidStatus::Active
    );
    let refused = harness
        .charge(91, 1, 910, USER, 10_000, 1)
        .await
        .unwrap_err();
    assert_error(refused, Code::FailedPrecondition, "SUBSCRIPTION_INACTIVE");
    let still = harness.charge(92, 1, 910, USER, 10_000, 1).await.unwrap();
    assert_eq!(
        still.outcome(),
        pillivery_proto::payment::ChargeOutcome::Charged
    );

    // The last one is suspended (renewals gave up): the SID is inactivated at the PG.
    deliver(&handler, &database, &suspended(92, 910))
        .await
        .unwrap();
    assert_eq!(
        harness.sandbox.subscriptions(&sid)[0].status,
        SidStatus::Inactive
    );
    let after = harness
        .charge(92, 2, 910, USER, 10_000, 1)
        .await
        .unwrap_err();
    assert_error(after, Code::FailedPrecondition, "SUBSCRIPTION_INACTIVE");
    // A repeat (or a late cancel of the suspended one) changes nothing and calls nothing.
    deliver(&handler, &database, &canceled(92, 910))
        .await
        .unwrap();
    // A late "created" never revives an ended subscription.
    deliver(&handler, &database, &created(91, 910))
        .await
        .unwrap();
    let store = payment::store::PaymentStore::new(database.clone());
    assert!(!store.link(91).await.unwrap().unwrap().active);

    // Without the origin order the SID is unknown: permanent.
    let orphan = deliver(&handler, &database, &canceled(93, 0)).await;
    assert!(
        matches!(&orphan, Err(HandlerError::Permanent(_))),
        "{orphan:?}"
    );
    harness
}

async fn the_consumer_applies_published_events_once_and_dead_letters_failures(
    harness: Harness,
) -> Harness {
    // A refund requested twice on the bus (the relay published it twice): one cancel.
    harness.orders.add(920, USER, 5_000, false);
    harness.pay(USER, 920).await;
    harness.orders.set_status(920, OrderStatus::RefundPending);
    let event = refund_requested(920, 5_000);
    harness.publish(&event).await;
    harness.publish(&event).await;
    eventually("order 920 refunded through the bus", PATIENCE, || async {
        (harness.orders.order(920).status == OrderStatus::Refunded).then_some(())
    })
    .await;
    // An event published after the duplicate is handled after it: once it is applied, the
    // duplicate has been skipped.
    harness.orders.add(921, USER, 20_000, true);
    harness.pay(USER, 921).await;
    harness.publish(&created(95, 921)).await;
    harness.publish(&canceled(95, 921)).await;
    let sid = harness.sandbox.subscriptions(&SubscriptionFilter {
        partner_user_id: Some(USER.to_string()),
        status: Some(SidStatus::Active),
        ..Default::default()
    });
    assert_eq!(sid.len(), 1, "{sid:?}");
    let sid = SubscriptionFilter {
        sid: Some(sid[0].sid.clone()),
        ..Default::default()
    };
    eventually("the SID of order 921 inactive", PATIENCE, || async {
        (harness.sandbox.subscriptions(&sid)[0].status == SidStatus::Inactive).then_some(())
    })
    .await;
    assert_eq!(harness.ledger_of("order-920").cancels, 1);

    // A refund for an order never paid here: dead-lettered with the reason, on the admin port.
    let unknown = refund_requested(929, 1_000);
    harness.publish(&unknown).await;
    let letter = eventually("the unknown order's dead letter", PATIENCE, || async {
        harness
            .dead_letters()
            .await
            .into_iter()
            .find(|letter| letter["eventId"] == unknown.event_id.as_str())
    })
    .await;
    assert_eq!(letter["consumer"], "payment");
    assert_eq!(letter["stream"], "order");
    assert!(
        letter["reason"].as_str().unwrap().contains("929"),
        "{letter}"
    );

    // The PG failing every cancel: retried (3 attempts in the test configuration), then
    // dead-lettered; nothing refunded meanwhile. Replayed once the PG is back: refunded once.
    harness.orders.add(930, USER, 7_000, false);
    harness.pay(USER, 930).await;
    harness.orders.set_status(930, OrderStatus::RefundPending);
    harness
        .sandbox
        .set_faults(FaultConfig {
            server_error_rate: 1.0,
            endpoints: EndpointSet::of(&[Endpoint::Cancel]),
            ..FaultConfig::default()
        })
        .unwrap();
    let failing = refund_requested(930, 7_000);
    harness.publish(&failing).await;
    let letter = eventually("the failing refund's dead letter", PATIENCE, || async {
        harness
            .dead_letters()
            .await
            .into_iter()
            .find(|letter| letter["eventId"] == failing.event_id.as_str())
    })
    .await;
    assert_eq!(letter["attempts"], 3, "{letter}");
    assert_eq!(harness.ledger_of("order-930").cancels, 0);
    assert_eq!(harness.orders.order(930).status, OrderStatus::RefundPending);
    harness.sandbox.set_faults(FaultConfig::default()).unwrap();
    let replay_url = format!(
        "http://{}/admin/events/dead-letters/{}/replay",
        harness.admin_addr, letter["id"]
    );
    // The breaker may still be open from the failed cancels: a replay then fails fast and the
    // letter keeps waiting, so the operator's replay is repeated until the PG is reached.
    let replayed: serde_json::Value = eventually("the refund replayed", PATIENCE, || async {
        let answer = harness.http.post(&replay_url).send().await.unwrap();
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap();
        (status == reqwest::StatusCode::OK).then_some(body)
    })
    .await;
    assert_eq!(replayed["outcome"], "applied", "{replayed}");
    let ledger = harness.ledger_of("order-930");
    assert_eq!((ledger.cancels, ledger.net_amount), (1, 0), "{ledger:?}");
    assert_eq!(harness.orders.order(930).status, OrderStatus::Refunded);
    assert!(
        harness
            .dead_letters()
            .await
            .iter()
            .all(|letter| letter["eventId"] != failing.event_id.as_str()),
        "replayed letters no longer wait"
    );
    harness
}

on_every_backend!(
    refund_requested_refunds_at_the_pg_once,
    subscription_events_link_and_inactivate_the_sid_with_the_last_subscription,
    the_consumer_applies_published_events_once_and_dead_letters_failures,
);
