//! Subscription events → billing jobs, through the service's handler and the platform's inbox:
//! duplicates change nothing, older versions are ignored, any order converges, cancellation ends
//! the job. SQLite always; PostgreSQL when `PILLIVERY_TEST_POSTGRES_URL` names a server.

mod common;

use std::sync::Arc;

use chrono::Utc;
use common::day;
use pillivery_platform::events::{EventEnvelope, EventHandler, InboxScope};
use pillivery_platform::time::{SharedClock, system_clock};
use pillivery_proto::events as pb;
use pillivery_testkit::{Backend, TestDatabase};
use prost::Message;
use scheduler::domain::JobStatus;
use scheduler::events::{CONSUMER_GROUP, SubscriptionEvents};
use scheduler::store::{Migrator, SchedulerStore};

fn state(version: i64, cycle: i32, next: &str, status: &str) -> pb::SubscriptionState {
    pb::SubscriptionState {
        subscription_id: 9,
        user_id: 90,
        item_id: 900,
        quantity: 1,
        period_days: 30,
        unit_price: 12_000,
        status: status.into(),
        anchor_date: "2026-01-01".into(),
        last_billed_date: "2026-01-01".into(),
        next_billing_date: next.into(),
        cycle,
        version,
        origin_order_id: 99,
    }
}

fn envelope(event_id: &str, event_type: &str, payload: Vec<u8>) -> EventEnvelope {
    EventEnvelope {
        event_id: event_id.into(),
        event_type: event_type.into(),
        aggregate_id: "9".into(),
        occurred_at: Utc::now(),
        traceparent: None,
        payload,
    }
}

async fn scenario(backend: Backend) {
    let database = TestDatabase::fresh(&backend).await;
    let connection = pillivery_platform::db::connect_and_migrate::<Migrator>(&database.config)
        .await
        .unwrap();
    let store = SchedulerStore::new(connection.clone());
    let clock: SharedClock = system_clock();
    let handler = Arc::new(SubscriptionEvents::new(clock));
    let deliver = |event: EventEnvelope| {
        let handler = handler.clone();
        let connection = connection.clone();
        async move {
            let scope = InboxScope::new(connection, CONSUMER_GROUP, &event.event_id);
            handler.handle(&event, &scope).await.unwrap();
        }
    };
    assert!(handler.wants("SubscriptionRenewed") && !handler.wants("OrderPaid"));

    let created = pb::SubscriptionCreated {
        subscription: Some(state(1, 0, "2026-01-31", "ACTIVE")),
    };
    deliver(envelope(
        "e1",
        "SubscriptionCreated",
        created.encode_to_vec(),
    ))
    .await;
    let job = store.get(9).await.unwrap().unwrap().job;
    assert_eq!(
        (
            job.status,
            job.next_billing_date,
            job.state_version,
            job.origin_order_id
        ),
        (JobStatus::Active, day("2026-01-31"), 1, 99)
    );

    // v3 (a renewal) arrives before v2 (a period change); v2 is then ignored.
    let renewed = pb::SubscriptionRenewed {
        subscription: Some(state(3, 1, "2026-03-02", "ACTIVE")),
        renewal_order_id: 5,
        line: None,
    };
    deliver(envelope(
        "e3",
        "SubscriptionRenewed",
        renewed.encode_to_vec(),
    ))
    .await;
    let changed = pb::SubscriptionChanged {
        subscription: Some(state(2, 0, "2026-03-02", "ACTIVE")),
    };
    deliver(envelope(
        "e2",
        "SubscriptionChanged",
        changed.encode_to_vec(),
    ))
    .await;
    let job = store.get(9).await.unwrap().unwrap().job;
    assert_eq!(
        (job.cycle, job.next_billing_date, job.state_version),
        (1, day("2026-03-02"), 3)
    );

    // A redelivery of the renewal, then the cancellation, then a duplicate of the cancellation.
    deliver(envelope(
        "e3",
        "SubscriptionRenewed",
        renewed.encode_to_vec(),
    ))
    .await;
    let canceled = pb::SubscriptionCanceled {
        subscription: Some(state(4, 1, "2026-03-02", "CANCELED")),
        reason: "USER".into(),
    };
    deliver(envelope(
        "e4",
        "SubscriptionCanceled",
        canceled.encode_to_vec(),
    ))
    .await;
    deliver(envelope(
        "e4",
        "SubscriptionCanceled",
        canceled.encode_to_vec(),
    ))
    .await;
    let job = store.get(9).await.unwrap().unwrap().job;
    assert_eq!((job.status, job.state_version), (JobStatus::Canceled, 4));
    assert!(!job.is_due(day("2030-01-01")));

    // A payload that cannot be a subscription is permanent (dead-lettered), not retried.
    let scope = InboxScope::new(connection.clone(), CONSUMER_GROUP, "e5");
    let broken = handler
        .handle(
            &envelope("e5", "SubscriptionChanged", vec![0xff, 0xff]),
            &scope,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            broken,
            pillivery_platform::events::HandlerError::Permanent(_)
        ),
        "{broken:?}"
    );
    connection.close().await.unwrap();
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_events_converge_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_events_converge_on_postgres() {
    if let Some(backend) = Backend::postgres() {
        scenario(backend).await;
    }
}
