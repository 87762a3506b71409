//! Indexes the EXPLAIN plans at 40 000 items asked for (see `docs/catalog.md`).
//!
//! - Keyword search on PostgreSQL: `LOWER(col) LIKE '%…%'` cannot use a B-tree, so every
//!   keyword search read the whole table (55 ms at 40 000 items). A GIN trigram index
//!   (`pg_trgm`) on exactly the expressions the store matches, `lower(product_name)` and
//!   `lower(enterprise)`, turns it into a BitmapOr of two index scans. Trigram indexes answer
//!   patterns with at least three characters between wildcards; shorter keywords still scan.
//!   The extension lives in `public` (one per database, shared by every service schema), so
//!   dropping one service's or one test's schema never drops it from under the others.
//!   MySQL/MariaDB and SQLite have no index for infix `LIKE` (a B-tree, expression or not,
//!   only serves a fixed prefix); there the keyword search still scans, which is recorded in
//!   `docs/catalog.md`.
//! - Counting the matches of a filter: the sort indexes find a page's rows, but the count reads
//!   every match, and with only `(key, id)` in the index PostgreSQL fetched each heap row to
//!   check `deleted_at` (on-sale: a sequential scan of the table). Each filter column gets a
//!   count index that answers `deleted_at IS NULL` by itself: partial `(column, id) WHERE
//!   deleted_at IS NULL` on PostgreSQL and SQLite, `(column, deleted_at, id)` on MySQL, which
//!   has no partial indexes.
//! - SQLite's live-item index: `ANALYZE` records for `(deleted_at, id)` the average number of
//!   rows per distinct `deleted_at`, and every deleted item has its own instant, so once a few
//!   hundred items were deleted SQLite took `deleted_at IS NULL` for a selective equality and
//!   answered every page by reading all live items through that index and sorting them (18 ms
//!   instead of 0.3 ms at 40 000 items; a partial `(deleted_at, id)` is still used that way by
//!   SQLite 3.51). It becomes `(id, deleted_at) WHERE deleted_at IS NULL`: nothing to look up
//!   by, but it still covers counting live items. PostgreSQL and MySQL keep theirs: they
//!   estimate `IS NULL` from the null fraction.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Items {
    Table,
    Id,
    DeletedAt,
    Enterprise,
    DiscountRateBp,
    RealPrice,
}

/// The GIN trigram index on `lower(product_name)`; `tests/plans.rs` looks for this name.
const PRODUCT_NAME_TRIGRAM_INDEX: &str = "idx_items_product_name_trgm";
/// The GIN trigram index on `lower(enterprise)`.
const ENTERPRISE_TRIGRAM_INDEX: &str = "idx_items_enterprise_trgm";

/// Any constant shared by every process creating the extension; serializes concurrent
/// migrations (parallel tests, replicas starting together) on `CREATE EXTENSION`, which
/// otherwise can fail with a duplicate key when two run at once.
const EXTENSION_LOCK_KEY: i64 = 0x5049_4c4c_5452_474d; // "PILLTRGM"

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        for index in count_indexes(backend) {
            manager.create_index(index).await?;
        }
        match backend {
            DbBackend::Postgres => create_trigram_indexes(manager).await,
            DbBackend::Sqlite => {
                // One transaction, hence one pooled connection: another connection of the
                // pool may still read the schema from before the drop.
                let transaction = manager.begin().await?;
                transaction
                    .drop_index(
                        Index::drop()
                            .name("idx_items_live")
                            .table(Items::Table)
                            .to_owned(),
                    )
                    .await?;
                transaction
                    .create_index(
                        Index::create()
                            .name("idx_items_live")
                            .table(Items::Table)
                            .col(Items::Id)
                            .col(Items::DeletedAt)
                            .and_where(Expr::col(Items::DeletedAt).is_null())
                            .to_owned(),
                    )
                    .await?;
                transaction.commit().await
            }
            // MySQL/MariaDB: no index for infix LIKE, and no expression index over these
            // columns without generated columns; keyword search scans there.
            _ => Ok(()),
        }
    }
}

/// The count indexes of the on-sale, price and brand filters: partial `(column, id) WHERE
/// deleted_at IS NULL` where the backend has partial indexes, `(column, deleted_at, id)` on
/// MySQL.
pub(super) fn count_indexes(backend: DbBackend) -> Vec<IndexCreateStatement> {
    [
        ("idx_items_on_sale_count", Items::DiscountRateBp),
        ("idx_items_price_count", Items::RealPrice),
        ("idx_items_brand_count", Items::Enterprise),
    ]
    .into_iter()
    .map(|(name, column)| {
        let mut index = Index::create();
        index.name(name).table(Items::Table).col(column);
        if backend == DbBackend::MySql {
            index.col(Items::DeletedAt).col(Items::Id);
        } else {
            index
                .col(Items::Id)
                .and_where(Expr::col(Items::DeletedAt).is_null());
        }
        index.to_owned()
    })
    .collect()
}

/// Creates `pg_trgm` (in `public`) unless the database has it, then the two GIN indexes with
/// the operator class qualified by the extension's schema (the catalog's search path names
/// only its own schema).
async fn create_trigram_indexes(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    // PostgreSQL migrations run in a transaction: the lock is held until it commits.
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [EXTENSION_LOCK_KEY.into()],
    ))
    .await?;
    let schema = match extension_schema(db).await? {
        Some(schema) => schema,
        None => {
            db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
                .await
                .map_err(|error| {
                    DbErr::Migration(format!(
                        "the catalog's keyword search needs PostgreSQL's pg_trgm extension \
                         (package postgresql-contrib), which could not be created: {error}. \
                         Install the contrib package, or have a superuser run \
                         `CREATE EXTENSION pg_trgm WITH SCHEMA public` in this database."
                    ))
                })?;
            extension_schema(db).await?.ok_or_else(|| {
                DbErr::Migration("pg_trgm was created but is not in pg_extension".to_owned())
            })?
        }
    };
    let operator_class = format!("{}.gin_trgm_ops", quote_identifier(&schema));
    for (name, column) in [
        (PRODUCT_NAME_TRIGRAM_INDEX, "product_name"),
        (ENTERPRISE_TRIGRAM_INDEX, "enterprise"),
    ] {
        db.execute_unprepared(&format!(
            "CREATE INDEX \"{name}\" ON \"items\" USING gin (lower(\"{column}\") {operator_class})"
        ))
        .await?;
    }
    Ok(())
}

/// The schema `pg_trgm` is installed in, if it is installed.
async fn extension_schema<C: ConnectionTrait>(db: &C) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT n.nspname AS schema FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'",
        ))
        .await?;
    row.map(|row| row.try_get::<String>("", "schema"))
        .transpose()
}

fn quote_identifier(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_indexes_cover_deleted_at_on_every_backend() {
        let build = |backend: DbBackend| -> Vec<String> {
            count_indexes(backend)
                .iter()
                .map(|index| backend.build(index).sql)
                .collect()
        };
        let mysql = build(DbBackend::MySql);
        assert!(
            mysql.contains(
                &"CREATE INDEX `idx_items_on_sale_count` ON `items` (`discount_rate_bp`, `deleted_at`, `id`)"
                    .to_owned()
            ),
            "{mysql:#?}"
        );
        let postgres = build(DbBackend::Postgres);
        assert!(
            postgres.contains(
                &r#"CREATE INDEX "idx_items_price_count" ON "items" ("real_price", "id") WHERE "deleted_at" IS NULL"#
                    .to_owned()
            ),
            "{postgres:#?}"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("public"), "\"public\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
