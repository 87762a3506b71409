//! The query plans `docs/catalog.md` relies on, checked on small data so they cannot silently
//! regress: SQLite always, PostgreSQL when `PILLIVERY_TEST_POSTGRES_URL` names a server.
//!
//! The statements are the store's own text, copied from the PostgreSQL server log
//! (`auto_explain`) while the store ran them; only the placeholder style differs per backend.
//! When `store/mod.rs` changes how it builds a search, update them here (and the plans in
//! `docs/catalog.md`).

use catalog::domain::demo;
use catalog::store::{CatalogStore, Migrator};
use pillivery_platform::db::connect_and_migrate;
use pillivery_testkit::{Backend, TestDatabase};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

/// Items seeded per test: enough for the planners to prefer indexes, quick to insert.
const ITEMS: usize = 2_000;

/// Every column of `items`, as the store selects them.
const ITEM_COLUMNS: &str = r#""items"."id", "items"."product_name", "items"."enterprise", "items"."thumbnail", "items"."description_image", "items"."main_function", "items"."base_standard", "items"."intake", "items"."serving_use", "items"."preserve_period", "items"."distribution_period", "items"."statement_number", "items"."registered_date", "items"."sungsang", "items"."origin_price", "items"."discount_rate_bp", "items"."discount_price", "items"."real_price", "items"."sales", "items"."views", "items"."review_count", "items"."star_sum", "items"."star_avg_centi", "items"."deleted_at", "items"."created_at", "items"."updated_at", "items"."version", "items"."views_folded_through""#;

/// The category page sorted by SALES: `$1` = 1, `$2` = category, `$3` = limit, `$4` = offset.
fn category_sales_page() -> String {
    format!(
        r#"SELECT {ITEM_COLUMNS} FROM "items" WHERE "items"."deleted_at" IS NULL AND EXISTS(SELECT $1 FROM "item_categories" WHERE "item_categories"."item_id" = "items"."id" AND "item_categories"."category" = $2) ORDER BY "items"."sales" DESC, "items"."id" ASC LIMIT $3 OFFSET $4"#
    )
}

/// The total of a keyword search: `$1`, `$2` = the pattern, `$3` = 1 (the LIMIT of `one()`).
const KEYWORD_COUNT: &str = r#"SELECT COUNT("items"."id") AS "total" FROM "items" WHERE "items"."deleted_at" IS NULL AND (LOWER("items"."product_name") LIKE $1 ESCAPE E'\\' OR LOWER("items"."enterprise") LIKE $2 ESCAPE E'\\') LIMIT $3"#;

/// A keyword page sorted by SALES: `$1`, `$2` = the pattern, `$3` = limit, `$4` = offset.
fn keyword_sales_page() -> String {
    format!(
        r#"SELECT {ITEM_COLUMNS} FROM "items" WHERE "items"."deleted_at" IS NULL AND (LOWER("items"."product_name") LIKE $1 ESCAPE E'\\' OR LOWER("items"."enterprise") LIKE $2 ESCAPE E'\\') ORDER BY "items"."sales" DESC, "items"."id" ASC LIMIT $3 OFFSET $4"#
    )
}

/// A fresh, migrated database of `backend` with [`ITEMS`] demo items, some of them sold,
/// reviewed and deleted like a shop in use, and fresh planner statistics.
async fn seeded(backend: &Backend, items: usize) -> (TestDatabase, DatabaseConnection) {
    let database = TestDatabase::fresh(backend).await;
    let db = connect_and_migrate::<Migrator>(&database.config)
        .await
        .unwrap_or_else(|error| panic!("{} unusable: {error}", backend.name()));
    let store = CatalogStore::new(db.clone());
    store
        .insert_items(&demo::demo_items(items))
        .await
        .expect("demo items");
    // Deleted items each carry their own instant: that is what misled SQLite's planner
    // before `idx_items_live` became partial.
    for statement in [
        "UPDATE items SET sales = (id * 7919) % 3000, review_count = (id * 31) % 120",
        "UPDATE items SET deleted_at = created_at WHERE id % 10 = 0",
    ] {
        db.execute_unprepared(statement).await.expect(statement);
    }
    store.refresh_statistics().await.expect("ANALYZE");
    (database, db)
}

/// The plan of `sql` as text, one node per line.
async fn explain(db: &DatabaseConnection, prefix: &str, sql: &str, values: Vec<Value>) -> String {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            format!("{prefix} {sql}"),
            values,
        ))
        .await
        .unwrap_or_else(|error| panic!("{prefix} failed: {error}\n{sql}"));
    let column = match backend {
        DbBackend::Sqlite => "detail",
        _ => "QUERY PLAN",
    };
    rows.iter()
        .map(|row| row.try_get::<String>("", column).expect("a plan line"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// SQLite walks the SALES index for a category page and stops after the page, instead of
/// reading every live item and sorting them (what it did when `deleted_at IS NULL` looked
/// selective to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_category_page_walks_the_sort_index() {
    let (database, db) = seeded(&Backend::Sqlite, ITEMS).await;
    // SQLite takes `$n` placeholders as well.
    let plan = explain(
        &db,
        "EXPLAIN QUERY PLAN",
        &category_sales_page(),
        vec![1.into(), "EYE".into(), 20i64.into(), 0i64.into()],
    )
    .await;
    assert!(
        plan.contains("SCAN items USING INDEX idx_items_sales"),
        "the page must walk idx_items_sales:\n{plan}"
    );
    assert!(
        !plan.contains("TEMP B-TREE FOR ORDER BY"),
        "the page must not sort the matches:\n{plan}"
    );
    let _ = db.close().await;
    database.remove().await;
}

/// On PostgreSQL the keyword search finds its matches through the trigram index instead of
/// reading the table: the total (which reads every match) and a page of a rare keyword.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keyword_search_uses_the_trigram_index() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let (database, db) = seeded(&backend, ITEMS).await;
    // The same literals as the store's `contains_pattern` makes for "루테인" and "zzzz".
    let lutein = "%루테인%";
    let count = explain(
        &db,
        "EXPLAIN",
        KEYWORD_COUNT,
        vec![lutein.into(), lutein.into(), 1i64.into()],
    )
    .await;
    assert!(
        count.contains("idx_items_product_name_trgm")
            && count.contains("idx_items_enterprise_trgm"),
        "the keyword count must use both trigram indexes:\n{count}"
    );
    assert!(!count.contains("Seq Scan"), "{count}");
    let rare = "%zzzz%";
    let page = explain(
        &db,
        "EXPLAIN",
        &keyword_sales_page(),
        vec![rare.into(), rare.into(), 20i64.into(), 0i64.into()],
    )
    .await;
    assert!(
        page.contains("idx_items_product_name_trgm"),
        "a rare keyword's page must use the trigram index:\n{page}"
    );
    let _ = db.close().await;
    database.remove().await;
}
