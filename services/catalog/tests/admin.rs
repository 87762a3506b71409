//! Admin item management through the catalog's gRPC API, on a random port with a fresh database.
//!
//! Every scenario runs on SQLite, and on PostgreSQL / MySQL when `PILLIVERY_TEST_POSTGRES_URL` /
//! `PILLIVERY_TEST_MYSQL_URL` name a server. Tokens are signed by a key generated per test whose
//! JWKS is the catalog's `jwks` configuration, as the fleet wires it.

#[macro_use]
mod common;

use std::future::Future;

use common::{RunningCatalog, assert_error, authorized, decoded, fields};
use pillivery_platform::auth::{Role, SigningKey, TokenConfig, TokenIssuer};
use pillivery_proto::catalog as pb;
use pillivery_proto::catalog::catalog_admin_service_client::CatalogAdminServiceClient;
use pillivery_proto::catalog::catalog_service_client::CatalogServiceClient;
use pillivery_testkit::Backend;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const ADMIN_ID: i64 = 1;
const USER_ID: i64 = 2;

struct App {
    admin: CatalogAdminServiceClient<Channel>,
    catalog: CatalogServiceClient<Channel>,
    admin_token: String,
    user_token: String,
    /// Signed by a key the catalog does not know.
    stranger_token: String,
}

async fn run<F, Fut>(backend: Option<Backend>, test: F)
where
    F: FnOnce(App) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    let running = RunningCatalog::start(&backend).await;
    let stranger = TokenIssuer::new(SigningKey::generate(), TokenConfig::default());
    test(App {
        admin: CatalogAdminServiceClient::new(running.channel.clone()),
        catalog: CatalogServiceClient::new(running.channel.clone()),
        admin_token: running.token(ADMIN_ID, Role::Admin),
        user_token: running.token(USER_ID, Role::User),
        stranger_token: stranger
            .issue(ADMIN_ID, Role::Admin, chrono::Utc::now())
            .token,
    })
    .await;
    running.stop().await;
}

on_every_backend!(
    created_items_read_back_with_exact_prices,
    create_reports_every_violation_at_once,
    updates_recompute_prices_and_replace_categories,
    updates_change_only_what_is_sent,
    deleted_items_disappear,
    updates_and_deletes_of_missing_items_are_not_found,
    imports_answer_ids_in_order,
    an_import_with_bad_items_names_them_all_and_stores_nothing,
    an_oversized_import_is_refused,
    only_admins_manage_items,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// A complete create body.
fn draft(
    name: &str,
    brand: &str,
    price: i64,
    rate: f64,
    categories: &[pb::Category],
) -> pb::ItemDraft {
    pb::ItemDraft {
        product_name: Some(name.to_owned()),
        enterprise: Some(brand.to_owned()),
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
        categories: categories.iter().map(|&category| category as i32).collect(),
        origin_price: Some(price),
        discount_rate: Some(rate),
    }
}

fn lutein() -> pb::ItemDraft {
    draft(
        "루테인 골드",
        "종근당",
        15_000,
        0.125,
        &[pb::Category::Eye, pb::Category::Antioxidant],
    )
}

async fn create(app: &mut App, item: pb::ItemDraft) -> pb::Item {
    let request = authorized(pb::CreateItemRequest { item: Some(item) }, &app.admin_token);
    app.admin
        .create_item(request)
        .await
        .expect("create")
        .into_inner()
}

/// The item as GetItem shows it, with `views` zeroed: reading counts a view, and views are not
/// what these scenarios are about.
async fn get(app: &mut App, item_id: i64) -> Result<pb::Item, Status> {
    app.catalog
        .get_item(pb::GetItemRequest { item_id })
        .await
        .map(|response| pb::Item {
            views: 0,
            ..response.into_inner()
        })
}

fn timestamp_key(instant: &Option<prost_types::Timestamp>) -> (i64, i32) {
    let instant = instant.expect("instants are always present");
    (instant.seconds, instant.nanos)
}

/// Ids of every live item matching, cheapest first.
async fn search(app: &mut App, request: pb::SearchItemsRequest) -> Vec<i64> {
    app.catalog
        .search_items(pb::SearchItemsRequest {
            sort: pb::ItemSort::PriceL as i32,
            size: Some(100),
            ..request
        })
        .await
        .expect("search")
        .into_inner()
        .data
        .into_iter()
        .map(|row| row.item_id)
        .collect()
}

async fn in_category(app: &mut App, category: pb::Category) -> Vec<i64> {
    search(
        app,
        pb::SearchItemsRequest {
            category: Some(category as i32),
            ..Default::default()
        },
    )
    .await
}

async fn everything(app: &mut App) -> Vec<i64> {
    search(app, pb::SearchItemsRequest::default()).await
}

fn categories(codes: &[pb::Category]) -> Vec<i32> {
    codes.iter().map(|&code| code as i32).collect()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn created_items_read_back_with_exact_prices(mut app: App) {
    let created = create(&mut app, lutein()).await;
    assert!(created.item_id > 0);
    assert_eq!(created.product_name, "루테인 골드");
    assert_eq!(created.origin_price, 15_000);
    assert_eq!(created.discount_rate, 0.125);
    assert_eq!(created.discount_price, 1_875);
    assert_eq!(created.real_price, 13_125);
    assert_eq!(created.registered_date, "2024-02-29");
    assert_eq!(
        created.categories,
        categories(&[pb::Category::Eye, pb::Category::Antioxidant])
    );
    assert_eq!(
        (created.sales, created.views, created.review_count),
        (0, 0, 0)
    );
    assert_eq!(created.created_at, created.updated_at);

    let read = get(&mut app, created.item_id).await.expect("get");
    assert_eq!(read, created);
    assert_eq!(everything(&mut app).await, vec![created.item_id]);
    assert_eq!(
        in_category(&mut app, pb::Category::Antioxidant).await,
        vec![created.item_id]
    );

    // Names are trimmed; the smallest and largest prices and rates are exact.
    let edge = create(
        &mut app,
        draft(
            "  끝값  ",
            "브랜드",
            9_007_199_254_740_991,
            0.999,
            &[pb::Category::Etc],
        ),
    )
    .await;
    assert_eq!(edge.product_name, "끝값");
    assert_eq!(edge.discount_price, 8_998_192_055_486_250);
    assert_eq!(
        edge.real_price,
        9_007_199_254_740_991 - 8_998_192_055_486_250
    );
    let free = create(
        &mut app,
        draft("무료", "브랜드", 0, 0.0, &[pb::Category::Etc]),
    )
    .await;
    assert_eq!((free.discount_price, free.real_price), (0, 0));
}

async fn create_reports_every_violation_at_once(mut app: App) {
    let request = authorized(pb::CreateItemRequest { item: None }, &app.admin_token);
    let status = app.admin.create_item(request).await.unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(error.field_errors.len(), 16, "{:?}", fields(&error));
    assert_eq!(fields(&error)[0], "productName");

    let bad = pb::ItemDraft {
        product_name: Some(" ".to_owned()),
        enterprise: Some("가".repeat(256)),
        registered_date: Some("2024-2-29".to_owned()),
        categories: vec![99],
        origin_price: Some(-1),
        discount_rate: Some(0.1234),
        ..lutein()
    };
    let request = authorized(pb::CreateItemRequest { item: Some(bad) }, &app.admin_token);
    let status = app.admin.create_item(request).await.unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(
        fields(&error),
        vec![
            "productName",
            "enterprise",
            "registeredDate",
            "categories[0]",
            "originPrice",
            "discountRate"
        ]
    );
    assert_eq!(error.field_errors[4].rejected_value, serde_json::json!(-1));
    assert!(everything(&mut app).await.is_empty());
}

async fn updates_recompute_prices_and_replace_categories(mut app: App) {
    let created = create(&mut app, lutein()).await;
    let item_id = created.item_id;

    // The price alone: the stored rate applies to the new price.
    let request = authorized(
        pb::UpdateItemRequest {
            item_id,
            item: Some(pb::ItemDraft {
                origin_price: Some(20_000),
                ..Default::default()
            }),
        },
        &app.admin_token,
    );
    let updated = app
        .admin
        .update_item(request)
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        (
            updated.origin_price,
            updated.discount_rate,
            updated.discount_price,
            updated.real_price
        ),
        (20_000, 0.125, 2_500, 17_500)
    );
    assert!(
        timestamp_key(&updated.updated_at) >= timestamp_key(&created.updated_at),
        "updated_at moves forward"
    );
    assert_eq!(updated.created_at, created.created_at);

    // The rate alone, and new categories.
    let request = authorized(
        pb::UpdateItemRequest {
            item_id,
            item: Some(pb::ItemDraft {
                discount_rate: Some(0.333),
                categories: categories(&[pb::Category::Liver, pb::Category::Fatigue]),
                ..Default::default()
            }),
        },
        &app.admin_token,
    );
    let updated = app
        .admin
        .update_item(request)
        .await
        .expect("update")
        .into_inner();
    // 20 000 × 0.333 = 6 660.
    assert_eq!(
        (
            updated.origin_price,
            updated.discount_rate,
            updated.discount_price,
            updated.real_price
        ),
        (20_000, 0.333, 6_660, 13_340)
    );
    assert_eq!(
        updated.categories,
        categories(&[pb::Category::Liver, pb::Category::Fatigue])
    );
    assert_eq!(get(&mut app, item_id).await.expect("get"), updated);

    assert_eq!(
        in_category(&mut app, pb::Category::Liver).await,
        vec![item_id]
    );
    assert_eq!(
        in_category(&mut app, pb::Category::Fatigue).await,
        vec![item_id]
    );
    assert!(in_category(&mut app, pb::Category::Eye).await.is_empty());
    assert!(
        in_category(&mut app, pb::Category::Antioxidant)
            .await
            .is_empty()
    );

    // Both at once; the price filter works on the new real price (15 001 − 1 875 = 13 126).
    let request = authorized(
        pb::UpdateItemRequest {
            item_id,
            item: Some(pb::ItemDraft {
                origin_price: Some(15_001),
                discount_rate: Some(0.125),
                ..Default::default()
            }),
        },
        &app.admin_token,
    );
    let updated = app
        .admin
        .update_item(request)
        .await
        .expect("update")
        .into_inner();
    // 15 001 × 0.125 = 1 875.125 → 1 875.
    assert_eq!(
        (updated.discount_price, updated.real_price),
        (1_875, 13_126)
    );
    let found = search(
        &mut app,
        pb::SearchItemsRequest {
            min_price: Some(13_126),
            max_price: Some(13_126),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(found, vec![item_id]);
}

async fn updates_change_only_what_is_sent(mut app: App) {
    let created = create(&mut app, lutein()).await;
    let item_id = created.item_id;
    let request = authorized(
        pb::UpdateItemRequest {
            item_id,
            item: Some(pb::ItemDraft {
                product_name: Some("  루테인 플러스 ".to_owned()),
                intake: Some("1일 2회".to_owned()),
                registered_date: Some("2025-01-31".to_owned()),
                ..Default::default()
            }),
        },
        &app.admin_token,
    );
    let updated = app
        .admin
        .update_item(request)
        .await
        .expect("update")
        .into_inner();
    let expected = pb::Item {
        product_name: "루테인 플러스".to_owned(),
        intake: "1일 2회".to_owned(),
        registered_date: "2025-01-31".to_owned(),
        updated_at: updated.updated_at,
        ..created.clone()
    };
    assert_eq!(updated, expected);
    let found = search(
        &mut app,
        pb::SearchItemsRequest {
            keyword: Some("플러스".to_owned()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(found, vec![item_id]);

    // An empty body changes nothing and answers the item.
    let request = authorized(
        pb::UpdateItemRequest {
            item_id,
            item: None,
        },
        &app.admin_token,
    );
    let unchanged = app
        .admin
        .update_item(request)
        .await
        .expect("update")
        .into_inner();
    assert_eq!(unchanged, updated);

    // Violations name the fields; nothing is written.
    let request = authorized(
        pb::UpdateItemRequest {
            item_id,
            item: Some(pb::ItemDraft {
                product_name: Some(String::new()),
                discount_rate: Some(1.0),
                categories: vec![0],
                origin_price: Some(1),
                ..Default::default()
            }),
        },
        &app.admin_token,
    );
    let status = app.admin.update_item(request).await.unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(
        fields(&error),
        vec!["productName", "categories[0]", "discountRate"]
    );
    assert_eq!(get(&mut app, item_id).await.expect("get"), updated);
}

async fn deleted_items_disappear(mut app: App) {
    let kept = create(
        &mut app,
        draft("남는 것", "브랜드", 1_000, 0.0, &[pb::Category::Eye]),
    )
    .await;
    let gone = create(&mut app, lutein()).await;
    assert_eq!(everything(&mut app).await, vec![kept.item_id, gone.item_id]);

    let request = authorized(
        pb::DeleteItemRequest {
            item_id: gone.item_id,
        },
        &app.admin_token,
    );
    app.admin.delete_item(request).await.expect("delete");

    let status = get(&mut app, gone.item_id).await.unwrap_err();
    assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");
    assert_eq!(everything(&mut app).await, vec![kept.item_id]);
    assert_eq!(
        in_category(&mut app, pb::Category::Eye).await,
        vec![kept.item_id]
    );
    let main = app
        .catalog
        .get_main_page(pb::GetMainPageRequest {})
        .await
        .expect("main page")
        .into_inner();
    assert!(main.discount_items.is_empty());
    assert_eq!(
        main.best_sellers
            .iter()
            .map(|row| row.item_id)
            .collect::<Vec<_>>(),
        vec![kept.item_id]
    );

    // A second delete finds nothing to delete.
    let request = authorized(
        pb::DeleteItemRequest {
            item_id: gone.item_id,
        },
        &app.admin_token,
    );
    let status = app.admin.delete_item(request).await.unwrap_err();
    assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");
}

async fn updates_and_deletes_of_missing_items_are_not_found(mut app: App) {
    let gone = create(&mut app, lutein()).await;
    let request = authorized(
        pb::DeleteItemRequest {
            item_id: gone.item_id,
        },
        &app.admin_token,
    );
    app.admin.delete_item(request).await.expect("delete");

    for item_id in [gone.item_id, gone.item_id + 1_000, 0, -1] {
        let request = authorized(
            pb::UpdateItemRequest {
                item_id,
                item: Some(pb::ItemDraft {
                    origin_price: Some(1),
                    ..Default::default()
                }),
            },
            &app.admin_token,
        );
        let status = app.admin.update_item(request).await.unwrap_err();
        assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");

        let request = authorized(
            pb::UpdateItemRequest {
                item_id,
                item: None,
            },
            &app.admin_token,
        );
        let status = app.admin.update_item(request).await.unwrap_err();
        assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");

        let request = authorized(pb::DeleteItemRequest { item_id }, &app.admin_token);
        let status = app.admin.delete_item(request).await.unwrap_err();
        assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");
    }
    assert!(everything(&mut app).await.is_empty());
}

async fn imports_answer_ids_in_order(mut app: App) {
    let items = vec![
        draft("셋째 가격", "가", 3_000, 0.0, &[pb::Category::Bone]),
        draft(
            "첫째 가격",
            "나",
            1_000,
            0.1,
            &[pb::Category::Bone, pb::Category::Skin],
        ),
        draft("둘째 가격", "다", 2_000, 0.0, &[pb::Category::Skin]),
    ];
    let request = authorized(pb::ImportItemsRequest { items }, &app.admin_token);
    let ids = app
        .admin
        .import_items(request)
        .await
        .expect("import")
        .into_inner()
        .item_ids;
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    let first = get(&mut app, ids[0]).await.expect("get");
    assert_eq!(
        (first.product_name.as_str(), first.real_price),
        ("셋째 가격", 3_000)
    );
    let second = get(&mut app, ids[1]).await.expect("get");
    assert_eq!(
        (second.product_name.as_str(), second.real_price),
        ("첫째 가격", 900)
    );

    // Cheapest first: 900, 2 000, 3 000.
    assert_eq!(everything(&mut app).await, vec![ids[1], ids[2], ids[0]]);
    assert_eq!(
        in_category(&mut app, pb::Category::Bone).await,
        vec![ids[1], ids[0]]
    );
    assert_eq!(
        in_category(&mut app, pb::Category::Skin).await,
        vec![ids[1], ids[2]]
    );
    let found = search(
        &mut app,
        pb::SearchItemsRequest {
            keyword: Some("가격".to_owned()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(found.len(), 3);

    // An empty import stores nothing and answers no id.
    let request = authorized(
        pb::ImportItemsRequest { items: Vec::new() },
        &app.admin_token,
    );
    let ids_again = app
        .admin
        .import_items(request)
        .await
        .expect("import")
        .into_inner()
        .item_ids;
    assert!(ids_again.is_empty());
    assert_eq!(everything(&mut app).await.len(), 3);
}

async fn an_import_with_bad_items_names_them_all_and_stores_nothing(mut app: App) {
    let items = vec![
        lutein(),
        pb::ItemDraft {
            product_name: None,
            origin_price: Some(-5),
            ..lutein()
        },
        lutein(),
        pb::ItemDraft {
            categories: Vec::new(),
            registered_date: Some("2023-02-29".to_owned()),
            ..lutein()
        },
    ];
    let request = authorized(pb::ImportItemsRequest { items }, &app.admin_token);
    let status = app.admin.import_items(request).await.unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(
        fields(&error),
        vec![
            "items[1].productName",
            "items[1].originPrice",
            "items[3].registeredDate",
            "items[3].categories"
        ]
    );
    assert_eq!(error.field_errors[1].rejected_value, serde_json::json!(-5));
    assert!(everything(&mut app).await.is_empty());
}

async fn an_oversized_import_is_refused(mut app: App) {
    let items = vec![pb::ItemDraft::default(); catalog::domain::MAX_IMPORT_ITEMS + 1];
    let request = authorized(pb::ImportItemsRequest { items }, &app.admin_token);
    let status = app.admin.import_items(request).await.unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(fields(&error), vec!["items"]);
    assert_eq!(
        error.field_errors[0].rejected_value,
        serde_json::json!(10_001)
    );
    assert!(everything(&mut app).await.is_empty());
}

async fn only_admins_manage_items(mut app: App) {
    let item = create(&mut app, lutein()).await;
    let item_id = item.item_id;

    // A USER token is known but not enough; no token or a foreign one is no caller at all.
    let cases: [(Option<String>, Code, &str); 4] = [
        (
            Some(app.user_token.clone()),
            Code::PermissionDenied,
            "FORBIDDEN",
        ),
        (None, Code::Unauthenticated, "AUTHENTICATION_REQUIRED"),
        (
            Some(app.stranger_token.clone()),
            Code::Unauthenticated,
            "INVALID_TOKEN",
        ),
        (
            Some("not.a.token".to_owned()),
            Code::Unauthenticated,
            "INVALID_TOKEN",
        ),
    ];
    for (token, code, reason) in cases {
        let with_token = |message| match &token {
            Some(token) => authorized(message, token),
            None => Request::new(message),
        };
        let status = app
            .admin
            .create_item(with_token(pb::CreateItemRequest {
                item: Some(lutein()),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "create {reason}: {status:?}");
        assert_eq!(decoded(&status).reason, reason, "create");

        let mut request = Request::new(pb::UpdateItemRequest {
            item_id,
            item: Some(pb::ItemDraft {
                origin_price: Some(1),
                ..Default::default()
            }),
        });
        if let Some(token) = &token {
            request = authorized(request.into_inner(), token);
        }
        let status = app.admin.update_item(request).await.unwrap_err();
        assert_eq!(status.code(), code, "update {reason}");

        let mut request = Request::new(pb::DeleteItemRequest { item_id });
        if let Some(token) = &token {
            request = authorized(request.into_inner(), token);
        }
        let status = app.admin.delete_item(request).await.unwrap_err();
        assert_eq!(status.code(), code, "delete {reason}");

        let mut request = Request::new(pb::ImportItemsRequest {
            items: vec![lutein()],
        });
        if let Some(token) = &token {
            request = authorized(request.into_inner(), token);
        }
        let status = app.admin.import_items(request).await.unwrap_err();
        assert_eq!(status.code(), code, "import {reason}");
    }
    // Nothing changed: the one item is there as created.
    assert_eq!(everything(&mut app).await, vec![item_id]);
    assert_eq!(get(&mut app, item_id).await.expect("get"), item);
}
