//! The catalog's internal gRPC service (batch reads, sales counting), on a random port with a
//! fresh database.
//!
//! Every scenario runs on SQLite, and on PostgreSQL / MySQL when `PILLIVERY_TEST_POSTGRES_URL` /
//! `PILLIVERY_TEST_MYSQL_URL` name a server. Items are created and deleted through the admin
//! service with a token signed by a key generated per test; the internal calls carry no token.

#[macro_use]
mod common;

use std::future::Future;

use common::{RunningCatalog, assert_error, authorized, fields};
use pillivery_platform::auth::Role;
use pillivery_platform::error::DecodedError;
use pillivery_proto::catalog as pb;
use pillivery_proto::catalog::catalog_admin_service_client::CatalogAdminServiceClient;
use pillivery_proto::catalog::catalog_internal_service_client::CatalogInternalServiceClient;
use pillivery_testkit::Backend;
use tonic::transport::Channel;
use tonic::{Code, Status};

struct App {
    admin: CatalogAdminServiceClient<Channel>,
    internal: CatalogInternalServiceClient<Channel>,
    admin_token: String,
}

async fn run<F, Fut>(backend: Option<Backend>, test: F)
where
    F: FnOnce(App) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    let running = RunningCatalog::start(&backend).await;
    test(App {
        admin: CatalogAdminServiceClient::new(running.channel.clone()),
        internal: CatalogInternalServiceClient::new(running.channel.clone()),
        admin_token: running.token(1, Role::Admin),
    })
    .await;
    running.stop().await;
}

on_every_backend!(
    batch_get_keeps_request_order_and_collapses_repeats,
    batch_get_leaves_out_missing_and_deleted_items,
    batch_get_takes_at_most_a_hundred_ids,
    the_same_event_is_applied_once,
    different_events_add_up,
    sales_of_unknown_and_deleted_items_are_skipped,
    bad_sales_are_refused_and_change_nothing,
    concurrent_events_on_one_item_add_up_exactly,
    concurrent_redeliveries_apply_once,
);

// ---------------------------------------------------------------------------------------------
// Helpers

#[track_caller]
fn assert_invalid(status: Status) -> DecodedError {
    assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED")
}

fn draft(name: &str) -> pb::ItemDraft {
    pb::ItemDraft {
        product_name: Some(name.to_owned()),
        enterprise: Some("종근당".to_owned()),
        thumbnail: Some(format!("https://cdn.test/{name}.jpg")),
        description_image: Some(format!("https://cdn.test/{name}-detail.jpg")),
        main_function: Some("눈 건강에 도움을 줄 수 있음".to_owned()),
        base_standard: Some("루테인 20mg".to_owned()),
        intake: Some("1일 1회, 1회 1캡슐".to_owned()),
        serving_use: Some(String::new()),
        preserve_period: Some("서늘한 곳에 보관".to_owned()),
        distribution_period: Some("제조일로부터 24개월".to_owned()),
        statement_number: Some("200400200001".to_owned()),
        registered_date: Some("2024-02-29".to_owned()),
        sungsang: Some("노란색 연질캡슐".to_owned()),
        categories: vec![pb::Category::Eye as i32],
        origin_price: Some(15_000),
        discount_rate: Some(0.125),
    }
}

/// Creates `count` items through the admin service; answers their ids in creation order.
async fn create_items(app: &mut App, count: usize) -> Vec<i64> {
    let items = (0..count)
        .map(|index| draft(&format!("item {index}")))
        .collect();
    let request = authorized(pb::ImportItemsRequest { items }, &app.admin_token);
    app.admin
        .import_items(request)
        .await
        .expect("import")
        .into_inner()
        .item_ids
}

async fn delete_item(app: &mut App, item_id: i64) {
    let request = authorized(pb::DeleteItemRequest { item_id }, &app.admin_token);
    app.admin.delete_item(request).await.expect("delete");
}

async fn batch(app: &mut App, item_ids: &[i64]) -> Result<Vec<pb::Item>, Status> {
    app.internal
        .batch_get_items(pb::BatchGetItemsRequest {
            item_ids: item_ids.to_vec(),
        })
        .await
        .map(|response| response.into_inner().items)
}

async fn batch_ids(app: &mut App, item_ids: &[i64]) -> Vec<i64> {
    batch(app, item_ids)
        .await
        .expect("batch get")
        .iter()
        .map(|item| item.item_id)
        .collect()
}

/// The stored sales of each item, in the order given (0 for an item not answered).
async fn sales(app: &mut App, item_ids: &[i64]) -> Vec<i64> {
    let items = batch(app, item_ids).await.expect("batch get");
    item_ids
        .iter()
        .map(|item_id| {
            items
                .iter()
                .find(|item| item.item_id == *item_id)
                .map_or(0, |item| item.sales)
        })
        .collect()
}

fn sale(event_id: &str, lines: &[(i64, i64)]) -> pb::RecordSalesRequest {
    pb::RecordSalesRequest {
        event_id: event_id.to_owned(),
        lines: lines
            .iter()
            .map(|&(item_id, quantity)| pb::SoldQuantity { item_id, quantity })
            .collect(),
    }
}

async fn record(
    client: &mut CatalogInternalServiceClient<Channel>,
    event_id: &str,
    lines: &[(i64, i64)],
) -> Result<bool, Status> {
    client
        .record_sales(sale(event_id, lines))
        .await
        .map(|response| response.into_inner().applied)
}

// ---------------------------------------------------------------------------------------------
// BatchGetItems

async fn batch_get_keeps_request_order_and_collapses_repeats(mut app: App) {
    let ids = create_items(&mut app, 4).await;
    let asked = [ids[2], ids[0], ids[2], ids[3], ids[0], ids[1]];
    assert_eq!(
        batch_ids(&mut app, &asked).await,
        vec![ids[2], ids[0], ids[3], ids[1]]
    );
    assert_eq!(batch_ids(&mut app, &[]).await, Vec::<i64>::new());

    // Items answer in full, with their live prices.
    let items = batch(&mut app, &[ids[1]]).await.unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.product_name, "item 1");
    assert_eq!(
        (item.origin_price, item.discount_price, item.real_price),
        (15_000, 1_875, 13_125)
    );
    assert_eq!(item.categories, vec![pb::Category::Eye as i32]);
    assert_eq!(item.sales, 0);
}

async fn batch_get_leaves_out_missing_and_deleted_items(mut app: App) {
    let ids = create_items(&mut app, 3).await;
    delete_item(&mut app, ids[1]).await;
    let missing = ids.iter().max().unwrap() + 1_000;
    assert_eq!(
        batch_ids(&mut app, &[missing, ids[2], ids[1], -5, 0, ids[0]]).await,
        vec![ids[2], ids[0]]
    );
    assert_eq!(
        batch_ids(&mut app, &[ids[1], missing]).await,
        Vec::<i64>::new()
    );
}

async fn batch_get_takes_at_most_a_hundred_ids(mut app: App) {
    let ids = create_items(&mut app, 100).await;
    assert_eq!(batch_ids(&mut app, &ids).await, ids);

    let mut too_many = ids.clone();
    too_many.push(ids[0]);
    let error = assert_invalid(batch(&mut app, &too_many).await.unwrap_err());
    assert_eq!(fields(&error), vec!["itemIds"]);
}

// ---------------------------------------------------------------------------------------------
// RecordSales

async fn the_same_event_is_applied_once(mut app: App) {
    let ids = create_items(&mut app, 2).await;
    let lines = [(ids[0], 3), (ids[1], 1)];
    assert!(
        record(&mut app.internal, "order-1-paid", &lines)
            .await
            .unwrap()
    );
    assert_eq!(sales(&mut app, &ids).await, vec![3, 1]);

    assert!(
        !record(&mut app.internal, "order-1-paid", &lines)
            .await
            .unwrap()
    );
    assert_eq!(sales(&mut app, &ids).await, vec![3, 1]);

    // A redelivery is recognised by its id alone, whatever lines it carries.
    assert!(
        !record(&mut app.internal, "order-1-paid", &[(ids[0], 50)])
            .await
            .unwrap()
    );
    assert_eq!(sales(&mut app, &ids).await, vec![3, 1]);
}

async fn different_events_add_up(mut app: App) {
    let ids = create_items(&mut app, 2).await;
    assert!(
        record(&mut app.internal, "order-1-paid", &[(ids[0], 2)])
            .await
            .unwrap()
    );
    assert!(
        record(&mut app.internal, "renewal-7", &[(ids[0], 5), (ids[1], 4)])
            .await
            .unwrap()
    );
    // Two lines of one item in one event both count.
    assert!(
        record(
            &mut app.internal,
            "order-2-paid",
            &[(ids[1], 1), (ids[1], 2)]
        )
        .await
        .unwrap()
    );
    assert_eq!(sales(&mut app, &ids).await, vec![7, 7]);
}

async fn sales_of_unknown_and_deleted_items_are_skipped(mut app: App) {
    let ids = create_items(&mut app, 2).await;
    delete_item(&mut app, ids[1]).await;
    let missing = ids.iter().max().unwrap() + 1_000;
    assert!(
        record(
            &mut app.internal,
            "order-3-paid",
            &[(missing, 1), (ids[1], 2), (ids[0], 3)]
        )
        .await
        .unwrap()
    );
    assert_eq!(sales(&mut app, &[ids[0]]).await, vec![3]);
    // The event is recorded even though some of its items were skipped.
    assert!(
        !record(&mut app.internal, "order-3-paid", &[(ids[0], 3)])
            .await
            .unwrap()
    );
    assert_eq!(sales(&mut app, &[ids[0]]).await, vec![3]);
    // An event with no line is applied, and changes no counter.
    assert!(
        record(&mut app.internal, "order-4-paid", &[])
            .await
            .unwrap()
    );
    assert_eq!(sales(&mut app, &[ids[0]]).await, vec![3]);
}

async fn bad_sales_are_refused_and_change_nothing(mut app: App) {
    let ids = create_items(&mut app, 1).await;
    let item_id = ids[0];

    let error = assert_invalid(
        record(&mut app.internal, "", &[(item_id, 1)])
            .await
            .unwrap_err(),
    );
    assert_eq!(fields(&error), vec!["eventId"]);

    let long = "e".repeat(101);
    let error = assert_invalid(
        record(&mut app.internal, &long, &[(item_id, 1)])
            .await
            .unwrap_err(),
    );
    assert_eq!(fields(&error), vec!["eventId"]);

    let error = assert_invalid(
        record(
            &mut app.internal,
            "order-5-paid",
            &[(item_id, 0), (item_id, 1), (item_id, 10_001), (item_id, -3)],
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        fields(&error),
        vec![
            "lines[0].quantity",
            "lines[2].quantity",
            "lines[3].quantity"
        ]
    );
    assert_eq!(sales(&mut app, &ids).await, vec![0]);

    // A refused request does not consume its event id; the limits themselves are accepted.
    let hundred = "가".repeat(100);
    assert!(
        record(&mut app.internal, &hundred, &[(item_id, 10_000)])
            .await
            .unwrap()
    );
    assert!(
        record(&mut app.internal, "order-5-paid", &[(item_id, 1)])
            .await
            .unwrap()
    );
    assert_eq!(sales(&mut app, &ids).await, vec![10_001]);
}

async fn concurrent_events_on_one_item_add_up_exactly(mut app: App) {
    let ids = create_items(&mut app, 1).await;
    let item_id = ids[0];
    let tasks: Vec<_> = (1..=20_i64)
        .map(|n| {
            let mut client = app.internal.clone();
            tokio::spawn(async move {
                record(&mut client, &format!("order-{n}-paid"), &[(item_id, n)]).await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().expect("record sales"));
    }
    assert_eq!(sales(&mut app, &ids).await, vec![(1..=20).sum::<i64>()]);
}

async fn concurrent_redeliveries_apply_once(mut app: App) {
    let ids = create_items(&mut app, 2).await;
    let lines = [(ids[0], 3), (ids[1], 2)];
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let mut client = app.internal.clone();
            tokio::spawn(async move { record(&mut client, "renewal-42", &lines).await })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        if task.await.unwrap().expect("record sales") {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(sales(&mut app, &ids).await, vec![3, 2]);
}
