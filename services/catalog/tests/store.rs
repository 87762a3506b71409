//! The catalog store against real databases.
//!
//! Every test runs on a fresh SQLite file. When `PILLIVERY_TEST_POSTGRES_URL` or
//! `PILLIVERY_TEST_MYSQL_URL` is set, the same test also runs there, in a schema (PostgreSQL) or
//! database (MySQL/MariaDB) of its own that is dropped when the test passes. A server that is
//! named but unreachable fails the test; only an unset variable skips that backend.

#[macro_use]
mod common;

use std::future::Future;

use catalog::domain::{
    Category, DiscountRate, ItemChanges, ItemSearch, ItemSort, NewItem, PageRequest, SearchInput,
    demo,
};
use catalog::store::{CatalogStore, ItemRecord, Migrator, StoreError};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use pillivery_platform::db::connect_and_migrate;
use pillivery_testkit::{Backend, TestDatabase};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use sea_orm_migration::MigratorTrait;

/// What a test gets: the store, and the raw connection to arrange rows the store cannot write.
#[derive(Clone)]
struct Ctx {
    store: CatalogStore,
    db: DatabaseConnection,
}

/// Runs `test` on a fresh, migrated database of `backend` (skipped when that server is not
/// named by the environment), then drops the database.
async fn run<F, Fut>(backend: Option<Backend>, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else {
        return;
    };
    let database = TestDatabase::fresh(&backend).await;
    let db = connect_and_migrate::<Migrator>(&database.config)
        .await
        .unwrap_or_else(|error| panic!("{} unusable: {error}", backend.name()));
    let store = CatalogStore::new(db.clone());
    test(Ctx {
        store,
        db: db.clone(),
    })
    .await;
    let _ = db.close().await;
    database.remove().await;
}

on_every_backend!(
    migrations_run_once_and_again,
    inserted_items_read_back_field_for_field,
    insert_answers_ids_in_order,
    insert_of_nothing_is_nothing,
    a_failed_insert_leaves_nothing,
    get_answers_none_for_unknown_ids,
    every_sort_breaks_ties_by_id,
    pages_of_a_sort_concatenate_to_the_whole_order,
    keyword_matches_name_or_brand_ignoring_case,
    keyword_wildcards_match_literally,
    category_filter_keeps_every_category_of_the_item,
    brand_matches_exactly,
    price_bounds_are_inclusive_and_swapped,
    on_sale_means_a_rate_above_zero,
    filters_combine,
    paging_past_the_end_keeps_the_totals,
    an_empty_catalog_answers_empty_pages,
    deleted_items_never_appear,
    main_page_takes_nine_by_rate_and_by_sales,
    main_page_with_few_items_lists_them_all,
    instants_keep_microseconds,
    demo_catalog_round_trips,
    bulk_inserts_refresh_planner_statistics,
    updates_recompute_prices_and_bump_the_version,
    updates_leave_other_items_and_deleted_items_alone,
    soft_deletes_happen_once,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn new_item(
    name: &str,
    brand: &str,
    origin_price: i64,
    rate_bp: u16,
    categories: &[Category],
) -> NewItem {
    let mut categories = categories.to_vec();
    categories.sort();
    NewItem {
        product_name: name.to_owned(),
        enterprise: brand.to_owned(),
        thumbnail: format!("https://cdn.test/{name}.jpg"),
        description_image: format!("https://cdn.test/{name}-detail.jpg"),
        main_function: "눈 건강에 도움을 줄 수 있음".to_owned(),
        base_standard: "루테인 20mg".to_owned(),
        intake: "1일 1회, 1회 1캡슐".to_owned(),
        serving_use: "임산부는 섭취에 주의".to_owned(),
        preserve_period: "서늘한 곳에 보관".to_owned(),
        distribution_period: "제조일로부터 24개월".to_owned(),
        statement_number: "200400200001".to_owned(),
        registered_date: NaiveDate::from_ymd_opt(2024, 2, 29).expect("leap day"),
        sungsang: "노란색 연질캡슐".to_owned(),
        categories,
        origin_price,
        discount_rate: DiscountRate::from_basis_points(rate_bp).expect("rate on the grid"),
    }
}

/// A plain item in one category, priced `price` with no discount.
fn plain(name: &str, price: i64) -> NewItem {
    new_item(name, "테스트제약", price, 0, &[Category::Etc])
}

async fn insert(ctx: &Ctx, items: Vec<NewItem>) -> Vec<i64> {
    ctx.store.insert_items(&items).await.expect("insert items")
}

/// Sets columns of one item directly, as the counters and deletion will.
async fn set(ctx: &Ctx, item_id: i64, values: Vec<(&str, Value)>) {
    let mut update = Query::update();
    update.table(Alias::new("items"));
    for (column, value) in values {
        update.value(Alias::new(column), value);
    }
    update.and_where(Expr::col(Alias::new("id")).eq(item_id));
    let result = ctx.db.execute(&update).await.expect("update item");
    assert_eq!(result.rows_affected(), 1, "item {item_id} updated");
}

fn search_input(input: SearchInput) -> ItemSearch {
    ItemSearch::from_input(input).expect("valid search")
}

/// Everything matching, on one page, in the given order.
fn all_by(sort: ItemSort) -> ItemSearch {
    ItemSearch {
        sort,
        page: PageRequest { page: 1, size: 100 },
        ..ItemSearch::default()
    }
}

async fn ids(ctx: &Ctx, search: &ItemSearch) -> Vec<i64> {
    ctx.store
        .search(search)
        .await
        .expect("search")
        .rows
        .into_iter()
        .map(|row| row.item_id)
        .collect()
}

async fn ids_matching(ctx: &Ctx, input: SearchInput) -> Vec<i64> {
    let mut search = search_input(input);
    search.sort = ItemSort::PriceLow;
    search.page = PageRequest { page: 1, size: 100 };
    ids(ctx, &search).await
}

fn keyword(text: &str) -> SearchInput {
    SearchInput {
        keyword: Some(text.to_owned()),
        ..SearchInput::default()
    }
}

fn instant(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(1_764_000_000_000_000 + micros)
        .single()
        .expect("valid instant")
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn migrations_run_once_and_again(ctx: Ctx) {
    // The service migrates at every start: a second run over a migrated database is a no-op.
    Migrator::up(&ctx.db, None)
        .await
        .expect("second migration run");
    assert_eq!(ctx.store.count_items().await.expect("count"), 0);
}

async fn inserted_items_read_back_field_for_field(ctx: Ctx) {
    let sent = new_item(
        "종근당 루테인 지아잔틴 골드 60캡슐",
        "종근당",
        15_000,
        1_250,
        &[Category::Antioxidant, Category::Eye],
    );
    let before = Utc::now() - chrono::Duration::seconds(1);
    let ids = insert(&ctx, vec![sent.clone()]).await;
    let got = ctx
        .store
        .get(ids[0])
        .await
        .expect("get")
        .expect("the item exists");
    let after = Utc::now() + chrono::Duration::seconds(1);

    assert_eq!(got.item_id, ids[0]);
    assert_eq!(got.product_name, sent.product_name);
    assert_eq!(got.enterprise, sent.enterprise);
    assert_eq!(got.thumbnail, sent.thumbnail);
    assert_eq!(got.description_image, sent.description_image);
    assert_eq!(got.main_function, sent.main_function);
    assert_eq!(got.base_standard, sent.base_standard);
    assert_eq!(got.intake, sent.intake);
    assert_eq!(got.serving_use, sent.serving_use);
    assert_eq!(got.preserve_period, sent.preserve_period);
    assert_eq!(got.distribution_period, sent.distribution_period);
    assert_eq!(got.statement_number, sent.statement_number);
    assert_eq!(got.registered_date, sent.registered_date);
    assert_eq!(got.sungsang, sent.sungsang);
    assert_eq!(got.categories, vec![Category::Eye, Category::Antioxidant]);
    assert_eq!(got.origin_price, 15_000);
    assert_eq!(got.discount_rate.basis_points(), 1_250);
    assert_eq!(got.discount_rate.as_fraction(), 0.125);
    assert_eq!(got.discount_price, 1_875);
    assert_eq!(got.real_price, 13_125);
    assert_eq!(got.price(), sent.price());
    assert_eq!(
        (
            got.sales,
            got.views,
            got.review_count,
            got.star_sum,
            got.star_avg_centi
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(got.star_avg(), 0.0);
    assert_eq!(got.deleted_at, None);
    assert_eq!(got.version, 1);
    assert_eq!(got.created_at, got.updated_at);
    assert!(
        before <= got.created_at && got.created_at <= after,
        "{}",
        got.created_at
    );
    assert_eq!(
        got.created_at.timestamp_subsec_nanos() % 1_000,
        0,
        "microseconds"
    );
}

async fn insert_answers_ids_in_order(ctx: Ctx) {
    let names: Vec<String> = (0..30).map(|n| format!("상품 {n:02}")).collect();
    let items = names
        .iter()
        .enumerate()
        .map(|(n, name)| plain(name, 1_000 + n as i64))
        .collect();
    let ids = insert(&ctx, items).await;
    assert_eq!(ids.len(), 30);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    for (id, name) in ids.iter().zip(&names) {
        let got = ctx.store.get(*id).await.expect("get").expect("exists");
        assert_eq!(&got.product_name, name);
    }
    // A second batch continues after the first.
    let more = insert(&ctx, vec![plain("다음", 1)]).await;
    assert!(more[0] > ids[29]);
    assert_eq!(ctx.store.count_items().await.expect("count"), 31);
}

async fn insert_of_nothing_is_nothing(ctx: Ctx) {
    assert_eq!(insert(&ctx, Vec::new()).await, Vec::<i64>::new());
    assert_eq!(ctx.store.count_items().await.expect("count"), 0);
}

async fn a_failed_insert_leaves_nothing(ctx: Ctx) {
    // The domain never builds a negative price; the table's CHECK refuses one anyway, and the
    // items before it in the same call must disappear with it.
    let items = vec![
        plain("첫째", 1_000),
        plain("둘째", 2_000),
        plain("음수", -1),
    ];
    let error = ctx
        .store
        .insert_items(&items)
        .await
        .expect_err("CHECK violated");
    assert!(matches!(error, StoreError::Database(_)), "{error}");
    assert!(
        !error.is_unavailable(),
        "a constraint is not an outage: {error}"
    );
    assert_eq!(ctx.store.count_items().await.expect("count"), 0);
    assert_eq!(ids(&ctx, &all_by(ItemSort::Sales)).await, Vec::<i64>::new());
}

async fn get_answers_none_for_unknown_ids(ctx: Ctx) {
    let ids = insert(&ctx, vec![plain("하나", 1_000)]).await;
    for unknown in [0, -1, ids[0] + 1, i64::MAX] {
        assert_eq!(
            ctx.store.get(unknown).await.expect("get"),
            None,
            "{unknown}"
        );
    }
}

/// Six items with ties on every sort key. Returns their ids, a to f.
async fn tied_catalog(ctx: &Ctx) -> [i64; 6] {
    let items = vec![
        // name, origin, rate → real
        new_item("A", "가", 10_000, 0, &[Category::Eye]), // 10 000
        new_item("B", "가", 12_500, 2_000, &[Category::Eye]), // 10 000
        new_item("C", "가", 8_000, 0, &[Category::Eye]),  // 8 000
        new_item("D", "가", 20_000, 5_000, &[Category::Eye]), // 10 000
        new_item("E", "가", 30_000, 1_000, &[Category::Eye]), // 27 000
        new_item("F", "가", 5_000, 2_000, &[Category::Eye]), // 4 000
    ];
    let ids = insert(ctx, items).await;
    // (sales, review_count, star_avg_centi, created_at µs)
    let counters = [
        (5, 3, 450, 0),
        (10, 0, 0, 1),
        (5, 3, 467, 1),
        (0, 1, 450, 2),
        (10, 0, 0, 0),
        (0, 3, 450, 2),
    ];
    for (&id, &(sales, reviews, star, created)) in ids.iter().zip(&counters) {
        set(
            ctx,
            id,
            vec![
                ("sales", Value::from(sales as i64)),
                ("review_count", Value::from(reviews as i64)),
                ("star_avg_centi", Value::from(star as i64)),
                ("created_at", Value::from(instant(created))),
            ],
        )
        .await;
    }
    [ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]]
}

async fn every_sort_breaks_ties_by_id(ctx: Ctx) {
    let [a, b, c, d, e, f] = tied_catalog(&ctx).await;
    let table = [
        (ItemSort::Sales, vec![b, e, a, c, d, f]),
        // One microsecond apart: D, F newest; then B, C; then A, E.
        (ItemSort::Newest, vec![d, f, b, c, a, e]),
        (ItemSort::PriceHigh, vec![e, a, b, d, c, f]),
        (ItemSort::PriceLow, vec![f, c, a, b, d, e]),
        (ItemSort::DiscountRateHigh, vec![d, b, f, e, a, c]),
        (ItemSort::DiscountRateLow, vec![a, c, e, b, f, d]),
        (ItemSort::ReviewCount, vec![a, c, f, d, b, e]),
        (ItemSort::StarAvg, vec![c, a, d, f, b, e]),
    ];
    for (sort, want) in table {
        assert_eq!(ids(&ctx, &all_by(sort)).await, want, "{sort:?}");
    }
}

async fn pages_of_a_sort_concatenate_to_the_whole_order(ctx: Ctx) {
    tied_catalog(&ctx).await;
    for sort in ItemSort::ALL {
        let whole = ids(&ctx, &all_by(sort)).await;
        let mut paged = Vec::new();
        for page in 1..=3 {
            let search = ItemSearch {
                sort,
                page: PageRequest { page, size: 2 },
                ..ItemSearch::default()
            };
            let got = ctx.store.search(&search).await.expect("search");
            assert_eq!(got.total_elements, 6);
            assert_eq!(got.total_pages(), 3);
            assert_eq!(got.rows.len(), 2);
            paged.extend(got.rows.iter().map(|row| row.item_id));
        }
        assert_eq!(paged, whole, "{sort:?}");
    }
}

async fn keyword_matches_name_or_brand_ignoring_case(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![
            new_item(
                "Omega-3 Fish Oil",
                "NOW Foods",
                1_000,
                0,
                &[Category::Brain],
            ),
            new_item("루테인 골드", "종근당", 2_000, 0, &[Category::Eye]),
            new_item("칼슘 마그네슘", "GNC", 3_000, 0, &[Category::Bone]),
            new_item("Vitamin C", "솔가", 4_000, 0, &[Category::Antioxidant]),
        ],
    )
    .await;
    let table: [(&str, Vec<i64>); 12] = [
        ("omega", vec![ids[0]]),
        ("OMEGA-3", vec![ids[0]]),
        ("oMeGa", vec![ids[0]]),
        ("now foods", vec![ids[0]]),
        ("gnc", vec![ids[2]]),
        ("루테인", vec![ids[1]]),
        ("종근", vec![ids[1]]),
        ("마그네슘", vec![ids[2]]),
        ("  vitamin  ", vec![ids[3]]),
        ("i", vec![ids[0], ids[3]]),
        ("없는상품", vec![]),
        ("fish oil x", vec![]),
    ];
    for (text, want) in table {
        assert_eq!(ids_matching(&ctx, keyword(text)).await, want, "{text:?}");
    }
}

async fn keyword_wildcards_match_literally(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![
            plain("100% 비타민C", 1_000),
            plain("1000 비타민C", 2_000),
            plain("a_b 유산균", 3_000),
            plain("axb 유산균", 4_000),
            plain("back\\slash", 5_000),
            plain("it's 콜라겐", 6_000),
        ],
    )
    .await;
    let table: [(&str, Vec<i64>); 9] = [
        ("100%", vec![ids[0]]),
        ("%", vec![ids[0]]),
        ("0%", vec![ids[0]]),
        ("a_b", vec![ids[2]]),
        ("_", vec![ids[2]]),
        ("\\", vec![ids[4]]),
        ("K\\S", vec![ids[4]]),
        ("'", vec![ids[5]]),
        ("100", vec![ids[0], ids[1]]),
    ];
    for (text, want) in table {
        assert_eq!(ids_matching(&ctx, keyword(text)).await, want, "{text:?}");
    }
}

async fn category_filter_keeps_every_category_of_the_item(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![
            new_item(
                "눈+항산화",
                "가",
                1_000,
                0,
                &[Category::Antioxidant, Category::Eye],
            ),
            new_item("뼈", "가", 2_000, 0, &[Category::Bone]),
            new_item(
                "눈+피로+기타",
                "가",
                3_000,
                0,
                &[Category::Etc, Category::Fatigue, Category::Eye],
            ),
        ],
    )
    .await;
    let eye = ids_matching(
        &ctx,
        SearchInput {
            category: Some(Category::Eye.number()),
            ..SearchInput::default()
        },
    )
    .await;
    assert_eq!(eye, vec![ids[0], ids[2]]);
    // The legacy alias filters the same way.
    let legacy = ids_matching(
        &ctx,
        SearchInput {
            category_name: Some(Category::Eye.number()),
            ..SearchInput::default()
        },
    )
    .await;
    assert_eq!(legacy, eye);
    for category in Category::ALL {
        let want: Vec<i64> = match category {
            Category::Eye => vec![ids[0], ids[2]],
            Category::Antioxidant => vec![ids[0]],
            Category::Bone => vec![ids[1]],
            Category::Fatigue | Category::Etc => vec![ids[2]],
            _ => vec![],
        };
        let got = ids_matching(
            &ctx,
            SearchInput {
                category: Some(category.number()),
                ..SearchInput::default()
            },
        )
        .await;
        assert_eq!(got, want, "{category}");
    }

    // Rows carry all their categories, not only the one filtered on, in display order.
    let page = ctx
        .store
        .search(&ItemSearch {
            category: Some(Category::Fatigue),
            ..ItemSearch::default()
        })
        .await
        .expect("search");
    assert_eq!(
        page.rows[0].categories,
        vec![Category::Eye, Category::Fatigue, Category::Etc]
    );
    let all = ctx
        .store
        .search(&all_by(ItemSort::PriceLow))
        .await
        .expect("search");
    let categories: Vec<Vec<Category>> =
        all.rows.iter().map(|row| row.categories.clone()).collect();
    assert_eq!(
        categories,
        vec![
            vec![Category::Eye, Category::Antioxidant],
            vec![Category::Bone],
            vec![Category::Eye, Category::Fatigue, Category::Etc],
        ]
    );
}

async fn brand_matches_exactly(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![
            new_item("가", "종근당", 1_000, 0, &[Category::Etc]),
            new_item("나", "종근당건강", 2_000, 0, &[Category::Etc]),
            new_item("다", "GNC", 3_000, 0, &[Category::Etc]),
            new_item("라", "종근당", 4_000, 0, &[Category::Etc]),
        ],
    )
    .await;
    let brand = |name: &str| SearchInput {
        brand: Some(name.to_owned()),
        ..SearchInput::default()
    };
    assert_eq!(
        ids_matching(&ctx, brand("종근당")).await,
        vec![ids[0], ids[3]]
    );
    assert_eq!(
        ids_matching(&ctx, brand(" 종근당건강 ")).await,
        vec![ids[1]]
    );
    assert_eq!(ids_matching(&ctx, brand("GNC")).await, vec![ids[2]]);
    assert_eq!(ids_matching(&ctx, brand("gnc")).await, Vec::<i64>::new());
    assert_eq!(ids_matching(&ctx, brand("종근")).await, Vec::<i64>::new());
}

async fn price_bounds_are_inclusive_and_swapped(ctx: Ctx) {
    // Real prices 1000, 2000 (2500 at 20 %), 3000, 4000.
    let ids = insert(
        &ctx,
        vec![
            plain("1", 1_000),
            new_item("2", "가", 2_500, 2_000, &[Category::Etc]),
            plain("3", 3_000),
            plain("4", 4_000),
        ],
    )
    .await;
    let range = |min_price: Option<i64>, max_price: Option<i64>| SearchInput {
        min_price,
        max_price,
        ..SearchInput::default()
    };
    let table = [
        (Some(2_000), Some(3_000), vec![ids[1], ids[2]]),
        (Some(3_000), Some(2_000), vec![ids[1], ids[2]]),
        (Some(2_000), Some(2_000), vec![ids[1]]),
        (Some(2_001), Some(2_999), vec![]),
        (Some(3_000), None, vec![ids[2], ids[3]]),
        (None, Some(1_000), vec![ids[0]]),
        (Some(0), Some(999), vec![]),
        (Some(0), None, ids.clone()),
        (Some(2_500), Some(2_500), vec![]), // the origin price does not count
    ];
    for (min_price, max_price, want) in table {
        assert_eq!(
            ids_matching(&ctx, range(min_price, max_price)).await,
            want,
            "{min_price:?}..{max_price:?}"
        );
    }
}

async fn on_sale_means_a_rate_above_zero(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![
            new_item("정가", "가", 1_000, 0, &[Category::Etc]),
            new_item("최소 할인", "가", 1_000, 10, &[Category::Etc]), // 0.001: discount rounds to 1
            new_item("반값", "가", 1_000, 5_000, &[Category::Etc]),
            new_item("작은 할인", "가", 100, 10, &[Category::Etc]), // 0.001 of 100: discount 0
        ],
    )
    .await;
    let want = vec![ids[3], ids[2], ids[1]];
    let flag = SearchInput {
        on_sale: Some(true),
        ..SearchInput::default()
    };
    assert_eq!(ids_matching(&ctx, flag).await, want);
    let route = SearchInput {
        listing: "on-sale".to_owned(),
        ..SearchInput::default()
    };
    assert_eq!(ids_matching(&ctx, route).await, want);
    let off = SearchInput {
        on_sale: Some(false),
        ..SearchInput::default()
    };
    assert_eq!(ids_matching(&ctx, off).await.len(), 4);
}

async fn filters_combine(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![
            new_item("루테인 A", "종근당", 10_000, 1_000, &[Category::Eye]), // 9 000, on sale
            new_item("루테인 B", "종근당", 20_000, 0, &[Category::Eye]),     // 20 000
            new_item("루테인 C", "뉴트리원", 12_000, 2_500, &[Category::Eye]), // 9 000, on sale
            new_item("오메가3", "종근당", 9_000, 1_000, &[Category::Brain]), // 8 100, on sale
            new_item("루테인 D", "종근당", 50_000, 5_000, &[Category::Eye]), // 25 000, on sale
        ],
    )
    .await;
    let got = ids_matching(
        &ctx,
        SearchInput {
            keyword: Some("루테인".to_owned()),
            category: Some(Category::Eye.number()),
            brand: Some("종근당".to_owned()),
            min_price: Some(5_000),
            max_price: Some(20_000),
            on_sale: Some(true),
            ..SearchInput::default()
        },
    )
    .await;
    assert_eq!(got, vec![ids[0]]);
    let page = ctx
        .store
        .search(&search_input(SearchInput {
            keyword: Some("루테인".to_owned()),
            on_sale: Some(true),
            sort: ItemSort::DiscountRateHigh.number(),
            ..SearchInput::default()
        }))
        .await
        .expect("search");
    assert_eq!(page.total_elements, 3);
    let got: Vec<i64> = page.rows.iter().map(|row| row.item_id).collect();
    assert_eq!(got, vec![ids[4], ids[2], ids[0]]);
}

async fn paging_past_the_end_keeps_the_totals(ctx: Ctx) {
    let ids = insert(
        &ctx,
        (1..=5).map(|n| plain(&format!("{n}"), n * 100)).collect(),
    )
    .await;
    let page = |page: u32| ItemSearch {
        sort: ItemSort::PriceLow,
        page: PageRequest { page, size: 2 },
        ..ItemSearch::default()
    };
    let table = [
        (1, vec![ids[0], ids[1]]),
        (2, vec![ids[2], ids[3]]),
        (3, vec![ids[4]]),
        (4, vec![]),
        (1_000_000, vec![]),
    ];
    for (number, want) in table {
        let got = ctx.store.search(&page(number)).await.expect("search");
        let got_ids: Vec<i64> = got.rows.iter().map(|row| row.item_id).collect();
        assert_eq!(got_ids, want, "page {number}");
        assert_eq!(got.total_elements, 5, "page {number}");
        assert_eq!(got.total_pages(), 3, "page {number}");
        assert_eq!(
            got.page,
            PageRequest {
                page: number,
                size: 2
            }
        );
    }
}

async fn an_empty_catalog_answers_empty_pages(ctx: Ctx) {
    for sort in ItemSort::ALL {
        let page = ctx.store.search(&all_by(sort)).await.expect("search");
        assert!(page.rows.is_empty());
        assert_eq!(page.total_elements, 0);
        assert_eq!(page.total_pages(), 0);
    }
    let main = ctx.store.main_page().await.expect("main page");
    assert!(main.discount_items.is_empty() && main.best_sellers.is_empty());
    assert_eq!(ctx.store.count_items().await.expect("count"), 0);
}

async fn deleted_items_never_appear(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![
            new_item("살아있는 루테인", "종근당", 1_000, 1_000, &[Category::Eye]),
            new_item("지워진 루테인", "종근당", 2_000, 5_000, &[Category::Eye]),
            new_item("살아있는 칼슘", "종근당", 3_000, 0, &[Category::Bone]),
        ],
    )
    .await;
    let deleted = ids[1];
    // The deleted item would lead every list it is in.
    set(
        &ctx,
        deleted,
        vec![
            ("sales", Value::from(1_000i64)),
            ("review_count", Value::from(50i64)),
            ("star_avg_centi", Value::from(500i64)),
            ("deleted_at", Value::from(Utc::now())),
        ],
    )
    .await;

    assert_eq!(ctx.store.get(deleted).await.expect("get"), None);
    assert!(ctx.store.get(ids[0]).await.expect("get").is_some());
    assert_eq!(ctx.store.count_items().await.expect("count"), 2);
    for sort in ItemSort::ALL {
        let page = ctx.store.search(&all_by(sort)).await.expect("search");
        assert_eq!(page.total_elements, 2, "{sort:?}");
        assert!(
            page.rows.iter().all(|row| row.item_id != deleted),
            "{sort:?}"
        );
    }
    for input in [
        keyword("지워진"),
        SearchInput {
            category: Some(Category::Eye.number()),
            ..SearchInput::default()
        },
        SearchInput {
            brand: Some("종근당".to_owned()),
            ..SearchInput::default()
        },
        SearchInput {
            on_sale: Some(true),
            ..SearchInput::default()
        },
        SearchInput {
            min_price: Some(1_000),
            max_price: Some(1_000),
            ..SearchInput::default()
        },
    ] {
        let got = ids_matching(&ctx, input.clone()).await;
        assert!(!got.contains(&deleted), "{input:?}");
    }
    let main = ctx.store.main_page().await.expect("main page");
    let discount: Vec<i64> = main.discount_items.iter().map(|row| row.item_id).collect();
    let best: Vec<i64> = main.best_sellers.iter().map(|row| row.item_id).collect();
    assert_eq!(discount, vec![ids[0]]);
    assert_eq!(best, vec![ids[0], ids[2]]);
}

async fn main_page_takes_nine_by_rate_and_by_sales(ctx: Ctx) {
    // 14 items: 11 on sale with rates that tie in pairs, sales on a few.
    let rates = [
        0, 1_000, 3_000, 3_000, 0, 5_000, 1_000, 2_000, 2_000, 0, 4_000, 4_000, 500, 500,
    ];
    let items = rates
        .iter()
        .enumerate()
        .map(|(n, &rate)| {
            new_item(
                &format!("상품{n}"),
                "가",
                10_000 + n as i64,
                rate,
                &[Category::Etc],
            )
        })
        .collect();
    let ids = insert(&ctx, items).await;
    for (index, sales) in [(3, 7), (9, 7), (12, 30), (0, 1)] {
        set(&ctx, ids[index], vec![("sales", Value::from(sales as i64))]).await;
    }
    let main = ctx.store.main_page().await.expect("main page");
    let discount: Vec<i64> = main.discount_items.iter().map(|row| row.item_id).collect();
    let at = |indexes: &[usize]| indexes.iter().map(|&i| ids[i]).collect::<Vec<i64>>();
    // 5000; 4000 ×2; 3000 ×2; 2000 ×2; 1000 ×2 (cut at 9, 500s left out).
    assert_eq!(discount, at(&[5, 10, 11, 2, 3, 7, 8, 1, 6]));
    assert!(
        main.discount_items
            .iter()
            .all(|row| row.discount_rate.is_discounted())
    );
    let best: Vec<i64> = main.best_sellers.iter().map(|row| row.item_id).collect();
    // 30; 7 ×2 by id; 1; then unsold by id.
    assert_eq!(best, at(&[12, 3, 9, 0, 1, 2, 4, 5, 6]));
    assert!(
        main.best_sellers
            .iter()
            .all(|row| !row.categories.is_empty())
    );
}

async fn main_page_with_few_items_lists_them_all(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![
            new_item("정가", "가", 1_000, 0, &[Category::Eye]),
            new_item(
                "할인",
                "가",
                1_000,
                1_500,
                &[Category::Liver, Category::Skin],
            ),
            new_item("정가2", "가", 1_000, 0, &[Category::Etc]),
        ],
    )
    .await;
    let main = ctx.store.main_page().await.expect("main page");
    let discount: Vec<&ItemRecord> = main.discount_items.iter().collect();
    assert_eq!(discount.len(), 1);
    assert_eq!(discount[0].item_id, ids[1]);
    assert_eq!(
        discount[0].categories,
        vec![Category::Liver, Category::Skin]
    );
    // Nobody bought anything: all three are still best sellers, by id.
    let best: Vec<i64> = main.best_sellers.iter().map(|row| row.item_id).collect();
    assert_eq!(best, ids);
    // The item in both lists carries its categories in both.
    assert_eq!(
        main.best_sellers[1].categories,
        vec![Category::Liver, Category::Skin]
    );
}

async fn instants_keep_microseconds(ctx: Ctx) {
    let ids = insert(&ctx, vec![plain("시각", 1_000)]).await;
    let created = Utc
        .with_ymd_and_hms(2026, 11, 24, 2, 0, 0)
        .single()
        .expect("instant")
        + chrono::Duration::microseconds(123_456);
    let updated = created + chrono::Duration::microseconds(1);
    set(
        &ctx,
        ids[0],
        vec![
            ("created_at", Value::from(created)),
            ("updated_at", Value::from(updated)),
        ],
    )
    .await;
    let got = ctx.store.get(ids[0]).await.expect("get").expect("exists");
    assert_eq!(got.created_at, created);
    assert_eq!(got.updated_at, updated);
    assert_eq!(
        got.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "2026-11-24T02:00:00.123456Z"
    );
}

async fn demo_catalog_round_trips(ctx: Ctx) {
    // 1000 items: a bulk insert, which also refreshes the planner statistics.
    let demo_items = demo::demo_items(1_000);
    let ids = insert(&ctx, demo_items.clone()).await;
    assert_eq!(ctx.store.count_items().await.expect("count"), 1_000);
    for index in [0, 57, 999] {
        let sample = ctx
            .store
            .get(ids[index])
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(sample.product_name, demo_items[index].product_name);
        assert_eq!(sample.enterprise, demo_items[index].enterprise);
        assert_eq!(sample.categories, demo_items[index].categories);
        assert_eq!(sample.registered_date, demo_items[index].registered_date);
        assert_eq!(sample.price(), demo_items[index].price());
    }

    for category in Category::ALL {
        let page = ctx
            .store
            .search(&ItemSearch {
                category: Some(category),
                ..ItemSearch::default()
            })
            .await
            .expect("search");
        assert!(page.total_elements > 0, "{category} is covered");
        assert!(
            page.rows
                .iter()
                .all(|row| row.categories.contains(&category))
        );
    }
    let on_sale = ctx
        .store
        .search(&ItemSearch {
            on_sale: true,
            ..ItemSearch::default()
        })
        .await
        .expect("search");
    assert_eq!(on_sale.total_elements, 400);

    let by_price = ctx
        .store
        .search(&ItemSearch {
            sort: ItemSort::PriceLow,
            page: PageRequest { page: 1, size: 100 },
            ..ItemSearch::default()
        })
        .await
        .expect("search");
    assert!(
        by_price
            .rows
            .windows(2)
            .all(|pair| pair[0].real_price <= pair[1].real_price),
        "ascending real prices"
    );
    assert_eq!(by_price.total_pages(), 10);
    let korean = ctx
        .store
        .search(&search_input(keyword("루테인")))
        .await
        .expect("search");
    assert!(korean.total_elements > 0);
    assert!(
        korean
            .rows
            .iter()
            .all(|row| row.product_name.contains("루테인"))
    );
}

async fn bulk_inserts_refresh_planner_statistics(ctx: Ctx) {
    insert(&ctx, demo::demo_items(1_000)).await;
    let check = match ctx.db.get_database_backend() {
        DbBackend::Sqlite => Some("SELECT COUNT(*) FROM sqlite_stat1 WHERE tbl = 'items'"),
        DbBackend::Postgres => Some(
            "SELECT COUNT(*) FROM pg_stat_user_tables WHERE relname = 'items' \
             AND schemaname = current_schema() \
             AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL",
        ),
        _ => None,
    };
    if let Some(check) = check {
        let row = ctx
            .db
            .query_one_raw(Statement::from_string(ctx.db.get_database_backend(), check))
            .await
            .expect("statistics query")
            .expect("one row");
        let analysed: i64 = row.try_get_by_index(0).expect("a count");
        assert!(analysed > 0, "statistics of items after a bulk insert");
    }
    // Also callable on its own, on every backend.
    ctx.store
        .refresh_statistics()
        .await
        .expect("refresh statistics");
}

async fn updates_recompute_prices_and_bump_the_version(ctx: Ctx) {
    let ids = insert(
        &ctx,
        vec![new_item(
            "루테인",
            "종근당",
            15_000,
            1_250,
            &[Category::Eye],
        )],
    )
    .await;
    let before = ctx.store.get(ids[0]).await.expect("get").expect("live");
    assert_eq!(before.version, 1);
    let later = instant(123_456_789);
    let changes = ItemChanges {
        origin_price: Some(20_001),
        categories: Some(vec![Category::Bone, Category::Liver]),
        sungsang: Some("흰색 정제".to_owned()),
        ..ItemChanges::default()
    };
    let after = ctx
        .store
        .update_item(ids[0], &changes, later)
        .await
        .expect("update")
        .expect("live");
    // 20 001 × 0.125 = 2 500.125 → 2 500.
    assert_eq!(
        (after.origin_price, after.discount_price, after.real_price),
        (20_001, 2_500, 17_501)
    );
    assert_eq!(after.discount_rate, before.discount_rate);
    assert_eq!(after.categories, vec![Category::Bone, Category::Liver]);
    assert_eq!(after.sungsang, "흰색 정제");
    assert_eq!(after.updated_at, later);
    assert_eq!(after.created_at, before.created_at);
    assert_eq!(after.version, 2);
    assert_eq!(
        ctx.store.get(ids[0]).await.expect("get"),
        Some(after.clone())
    );

    let changes = ItemChanges {
        discount_rate: Some(DiscountRate::from_basis_points(5_000).expect("rate")),
        ..ItemChanges::default()
    };
    let after = ctx
        .store
        .update_item(ids[0], &changes, later)
        .await
        .expect("update")
        .expect("live");
    // 20 001 × 0.5 = 10 000.5 → 10 001 (half up).
    assert_eq!((after.discount_price, after.real_price), (10_001, 10_000));
    assert_eq!(after.categories, vec![Category::Bone, Category::Liver]);
    assert_eq!(after.version, 3);

    // Nothing to change: nothing written.
    let same = ctx
        .store
        .update_item(ids[0], &ItemChanges::default(), instant(999_999_999))
        .await
        .expect("update")
        .expect("live");
    assert_eq!(same, after);
}

async fn updates_leave_other_items_and_deleted_items_alone(ctx: Ctx) {
    let ids = insert(&ctx, vec![plain("하나", 1_000), plain("둘", 2_000)]).await;
    let other = ctx.store.get(ids[1]).await.expect("get");
    let changes = ItemChanges {
        product_name: Some("바뀐 하나".to_owned()),
        categories: Some(vec![Category::Skin]),
        ..ItemChanges::default()
    };
    ctx.store
        .update_item(ids[0], &changes, Utc::now())
        .await
        .expect("update")
        .expect("live");
    assert_eq!(ctx.store.get(ids[1]).await.expect("get"), other);

    assert!(
        ctx.store
            .soft_delete_item(ids[0], Utc::now())
            .await
            .expect("delete")
    );
    for item_id in [ids[0], ids[1] + 100] {
        let updated = ctx
            .store
            .update_item(item_id, &changes, Utc::now())
            .await
            .expect("update");
        assert_eq!(updated, None, "{item_id}");
        let updated = ctx
            .store
            .update_item(item_id, &ItemChanges::default(), Utc::now())
            .await
            .expect("update");
        assert_eq!(updated, None, "{item_id}");
    }
    // The deleted item's categories were not touched by the refused update.
    let skin = ids_matching(
        &ctx,
        SearchInput {
            category: Some(Category::Skin.number()),
            ..SearchInput::default()
        },
    )
    .await;
    assert!(skin.is_empty());
}

async fn soft_deletes_happen_once(ctx: Ctx) {
    let item_ids = insert(&ctx, vec![plain("하나", 1_000), plain("둘", 2_000)]).await;
    assert_eq!(ctx.store.count_items().await.expect("count"), 2);
    assert!(
        ctx.store
            .soft_delete_item(item_ids[0], instant(1))
            .await
            .expect("delete")
    );
    assert!(
        !ctx.store
            .soft_delete_item(item_ids[0], instant(2))
            .await
            .expect("delete")
    );
    assert!(
        !ctx.store
            .soft_delete_item(item_ids[1] + 100, instant(3))
            .await
            .expect("delete")
    );
    assert_eq!(ctx.store.get(item_ids[0]).await.expect("get"), None);
    assert_eq!(ctx.store.count_items().await.expect("count"), 1);
    assert_eq!(ids(&ctx, &all_by(ItemSort::Sales)).await, vec![item_ids[1]]);
    // The row stays, stamped with the first delete.
    let row = ctx
        .db
        .query_one_raw(Statement::from_string(
            ctx.db.get_database_backend(),
            format!("SELECT version FROM items WHERE id = {}", item_ids[0]),
        ))
        .await
        .expect("query")
        .expect("row stays");
    let version: i64 = row.try_get("", "version").expect("version");
    assert_eq!(version, 2);
}
