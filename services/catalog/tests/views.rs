//! View counting through GetItem, and folding the day's sketches into the stored total.
//!
//! The catalog runs with a manual clock, so a test crosses midnight (Asia/Seoul) by moving it
//! instead of waiting, and its own fold task effectively never runs (a one-hour interval):
//! folds are run by the test through [`ViewCounter`] on the same database, store and clock —
//! the code the task runs. Every scenario runs on SQLite, PostgreSQL and MySQL as configured,
//! and with Redis instead of the in-process store when `PILLIVERY_TEST_REDIS_URL` is set.

#[macro_use]
mod common;

use std::future::Future;
use std::sync::Arc;

use catalog::config::ViewsConfig;
use catalog::domain::demo;
use catalog::kv::CatalogKv;
use catalog::views::{ViewCounter, day_items_key};
use chrono::{Duration, Utc};
use common::{Options, RunningCatalog, assert_error};
use pillivery_platform::kv::KeyValueStore;
use pillivery_platform::time::{BusinessCalendar, Clock, ManualClock};
use pillivery_proto::catalog as pb;
use pillivery_proto::catalog::catalog_service_client::CatalogServiceClient;
use pillivery_testkit::Backend;
use tonic::{Code, Request};

struct App {
    catalog: RunningCatalog,
    clock: ManualClock,
    item_id: i64,
}

impl App {
    /// GetItem as the gateway sends it for a client at `ip`; answers the views shown.
    async fn view(&self, ip: &str) -> i64 {
        let mut request = Request::new(pb::GetItemRequest {
            item_id: self.item_id,
        });
        request
            .metadata_mut()
            .insert("x-client-ip", ip.parse().unwrap());
        CatalogServiceClient::new(self.catalog.channel.clone())
            .get_item(request)
            .await
            .unwrap()
            .into_inner()
            .views
    }

    /// A fold as the catalog's task runs it, on the same database, store and clock.
    async fn folder(&self) -> ViewCounter {
        ViewCounter::new(
            CatalogKv::new(&self.catalog.kv),
            self.catalog.store().await,
            BusinessCalendar::default(),
            Arc::new(self.clock.clone()),
            ViewsConfig::default(),
        )
    }

    async fn stored_views(&self) -> i64 {
        self.catalog
            .store()
            .await
            .get(self.item_id)
            .await
            .unwrap()
            .unwrap()
            .views
    }

    /// Moves the clock to the next day, past the fold's grace period.
    fn next_day(&self) {
        self.clock
            .advance(Duration::days(1) + Duration::minutes(10));
    }
}

async fn run<F, Fut>(backend: Option<Backend>, kv: Option<KeyValueStore>, test: F)
where
    F: FnOnce(App) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    let clock = ManualClock::starting_at(Utc::now());
    let catalog = RunningCatalog::start_with(
        &backend,
        Options {
            kv: Some(kv.unwrap_or_else(KeyValueStore::in_memory)),
            clock: Some(Arc::new(clock.clone())),
            configure: |config| config.views.fold_interval_ms = 3_600_000,
            ..Options::default()
        },
    )
    .await;
    let ids = catalog
        .store()
        .await
        .insert_items(&demo::demo_items(3))
        .await
        .unwrap();
    let app = App {
        catalog,
        clock,
        item_id: ids[1],
    };
    test(app).await;
}

macro_rules! on_every_backend_and_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(Some(super::Backend::Sqlite), None, super::$name).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(super::Backend::postgres(), None, super::$name).await
            })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(super::Backend::mysql(), None, super::$name).await
            })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                match pillivery_testkit::redis_store().await {
                    Some(kv) => super::run(Some(super::Backend::Sqlite), Some(kv), super::$name).await,
                    None => eprintln!("PILLIVERY_TEST_REDIS_URL is not set: Redis variant not run"),
                }
            })*
        }
    };
}

on_every_backend_and_store!(
    a_hundred_views_from_one_address_count_one,
    a_hundred_addresses_count_about_a_hundred,
    without_a_forwarded_address_the_peer_counts,
    unknown_items_are_not_counted,
    a_fold_moves_the_estimate_into_the_total_once,
    concurrent_folds_add_each_day_once,
    views_never_decrease_across_days_and_folds,
);

async fn a_hundred_views_from_one_address_count_one(app: App) {
    let mut shown = Vec::new();
    for _ in 0..100 {
        shown.push(app.view("203.0.113.7").await);
    }
    assert!(shown.iter().all(|views| *views == 1), "{shown:?}");
    // Spelled differently, the same address is the same visitor.
    assert_eq!(app.view("::ffff:203.0.113.7").await, 1);
    app.catalog.stop().await;
}

async fn a_hundred_addresses_count_about_a_hundred(app: App) {
    let mut last = 0;
    for host in 0..100 {
        last = app.view(&format!("198.51.100.{host}")).await;
    }
    // HyperLogLog with 16 384 registers is all but exact at this size; 2 % is its error bound.
    assert!((98..=102).contains(&last), "{last}");
    // Repeat visits change nothing.
    for host in 0..100 {
        assert_eq!(app.view(&format!("198.51.100.{host}")).await, last);
    }
    app.catalog.stop().await;
}

async fn without_a_forwarded_address_the_peer_counts(app: App) {
    let client = CatalogServiceClient::new(app.catalog.channel.clone());
    for _ in 0..3 {
        let mut request = Request::new(pb::GetItemRequest {
            item_id: app.item_id,
        });
        // Not an address: ignored, as if it were missing.
        request
            .metadata_mut()
            .insert("x-client-ip", "everyone-is-new".parse().unwrap());
        let views = client
            .clone()
            .get_item(request)
            .await
            .unwrap()
            .into_inner()
            .views;
        assert_eq!(views, 1, "the test's own loopback address, once");
    }
    // Another address is another visitor.
    assert_eq!(app.view("192.0.2.1").await, 2);
    app.catalog.stop().await;
}

async fn unknown_items_are_not_counted(app: App) {
    let status = CatalogServiceClient::new(app.catalog.channel.clone())
        .get_item(pb::GetItemRequest { item_id: 999_999 })
        .await
        .unwrap_err();
    assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");
    app.view("192.0.2.1").await;
    let today = BusinessCalendar::default().date_of(app.clock.now());
    let kv = CatalogKv::new(&app.catalog.kv);
    let items = kv.store().set_members(&day_items_key(today)).await.unwrap();
    assert_eq!(items, vec![app.item_id.to_string()]);
    app.catalog.stop().await;
}

async fn a_fold_moves_the_estimate_into_the_total_once(app: App) {
    for host in 0..50 {
        app.view(&format!("198.51.100.{host}")).await;
    }
    let before_midnight = app.view("198.51.100.0").await;
    assert_eq!(app.stored_views().await, 0, "no database write per view");
    // Today's views are not folded: the day is not over (earlier days had no views).
    let folder = app.folder().await;
    let report = folder.fold_due(None).await.unwrap();
    assert_eq!((report.items, report.views), (0, 0), "{report:?}");
    assert_eq!(app.stored_views().await, 0);

    app.next_day();
    // Yesterday not folded yet: still shown, from its sketch.
    assert_eq!(app.view("198.51.100.0").await, before_midnight + 1);
    let report = folder.fold_due(None).await.unwrap();
    assert_eq!(report.days.len(), 1, "{report:?}");
    assert_eq!(report.views, before_midnight as u64);
    assert_eq!(app.stored_views().await, before_midnight);
    // Folded: yesterday now comes from the stored total, today from its sketch.
    assert_eq!(app.view("198.51.100.0").await, before_midnight + 1);

    // Again, and again with the day's marker gone (a Redis restart, say): nothing changes.
    let again = folder.fold_due(None).await.unwrap();
    assert!(again.days.is_empty(), "{again:?}");
    let yesterday = report.days[0];
    let kv = CatalogKv::new(&app.catalog.kv);
    kv.store()
        .delete(&format!("views:{yesterday}:folded"))
        .await
        .unwrap();
    let redone = folder.fold_due(None).await.unwrap();
    assert_eq!(redone.days, vec![yesterday]);
    assert_eq!((redone.items, redone.views), (0, 0), "{redone:?}");
    assert_eq!(app.stored_views().await, before_midnight);
    assert_eq!(app.view("198.51.100.0").await, before_midnight + 1);
    app.catalog.stop().await;
}

async fn concurrent_folds_add_each_day_once(app: App) {
    for host in 0..40 {
        app.view(&format!("198.51.100.{host}")).await;
    }
    let estimate = app.view("198.51.100.0").await;
    app.next_day();
    let (one, two) = (app.folder().await, app.folder().await);
    // No lock on either: the fold table alone keeps the day from being added twice.
    let (first, second) = tokio::join!(one.fold_due(None), two.fold_due(None));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        first.views + second.views,
        estimate as u64,
        "{first:?} {second:?}"
    );
    assert_eq!(app.stored_views().await, estimate);
    // With the lock, as the task runs it: one of two runs folds, the other finds it taken or
    // the day done.
    app.next_day();
    app.view("192.0.2.9").await;
    app.next_day();
    let (first, second) = tokio::join!(one.fold_if_free(), two.fold_if_free());
    let added: u64 = [first.unwrap(), second.unwrap()]
        .iter()
        .flatten()
        .map(|report| report.views)
        .sum();
    assert_eq!(added, 1);
    assert_eq!(app.stored_views().await, estimate + 1);
    app.catalog.stop().await;
}

async fn views_never_decrease_across_days_and_folds(app: App) {
    let folder = app.folder().await;
    let mut shown = vec![app.view("192.0.2.1").await];
    for day in 0..4 {
        for host in 0..(10 + day * 5) {
            shown.push(app.view(&format!("198.51.{day}.{host}")).await);
        }
        app.next_day();
        shown.push(app.view("192.0.2.1").await);
        // Fold only every other day: unfolded days keep being shown from their sketches.
        if day % 2 == 1 {
            folder.fold_due(None).await.unwrap();
            shown.push(app.view("192.0.2.1").await);
        }
    }
    folder.fold_due(None).await.unwrap();
    shown.push(app.view("192.0.2.1").await);
    assert!(
        shown.windows(2).all(|pair| pair[0] <= pair[1]),
        "views went down: {shown:?}"
    );
    // 4 days of distinct visitors (10, 15, 20, 25) and 192.0.2.1 once per day (5 days).
    let expected = 10 + 15 + 20 + 25 + 5;
    let last = *shown.last().unwrap();
    assert!(
        (expected - 2..=expected + 2).contains(&last),
        "{last} vs {expected}"
    );
    // Everything but today is in the stored total.
    assert_eq!(app.stored_views().await, last - 1);
    app.catalog.stop().await;
}
