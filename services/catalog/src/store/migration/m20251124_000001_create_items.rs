//! `items` and `item_categories`, with an index for every sort of the search.
//!
//! Every search orders by one key with the item id as an ascending tiebreak and stops after a
//! page, so each sort has an index `(key [DESC], id)` that the database walks in order, checking
//! `deleted_at IS NULL` and the filters on the way (deleted items are rare). The direction is
//! part of the index because `key DESC, id ASC` is not the reverse of `key ASC, id ASC`. The
//! sort indexes deliberately do not start with `deleted_at`: PostgreSQL treats `IS NULL` as a
//! filter, not an equality, so it would no longer see the index as ordered by the key. Counting
//! live items has its own narrow index `(deleted_at, id)`. Strings that are indexed are
//! `VARCHAR(255)` (MySQL cannot index `TEXT` without a prefix length).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Items {
    Table,
    Id,
    ProductName,
    Enterprise,
    Thumbnail,
    DescriptionImage,
    MainFunction,
    BaseStandard,
    Intake,
    ServingUse,
    PreservePeriod,
    DistributionPeriod,
    StatementNumber,
    RegisteredDate,
    Sungsang,
    OriginPrice,
    DiscountRateBp,
    DiscountPrice,
    RealPrice,
    Sales,
    Views,
    ReviewCount,
    StarSum,
    StarAvgCenti,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
    Version,
}

#[derive(DeriveIden, Clone, Copy)]
enum ItemCategories {
    Table,
    ItemId,
    Category,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(items_table(backend)).await?;
        manager.create_table(item_categories_table(backend)).await?;
        for index in items_indexes() {
            manager.create_index(index).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_item_categories_category")
                    .table(ItemCategories::Table)
                    .col(ItemCategories::Category)
                    .col(ItemCategories::ItemId)
                    .to_owned(),
            )
            .await
    }
}

pub(super) fn items_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(Items::Table)
        .col(
            ColumnDef::new(Items::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(Items::ProductName)
                .string_len(255)
                .not_null(),
        )
        .col(ColumnDef::new(Items::Enterprise).string_len(255).not_null())
        .col(ColumnDef::new(Items::Thumbnail).text().not_null())
        .col(ColumnDef::new(Items::DescriptionImage).text().not_null())
        .col(ColumnDef::new(Items::MainFunction).text().not_null())
        .col(ColumnDef::new(Items::BaseStandard).text().not_null())
        .col(ColumnDef::new(Items::Intake).text().not_null())
        .col(ColumnDef::new(Items::ServingUse).text().not_null())
        .col(ColumnDef::new(Items::PreservePeriod).text().not_null())
        .col(ColumnDef::new(Items::DistributionPeriod).text().not_null())
        .col(ColumnDef::new(Items::StatementNumber).text().not_null())
        .col(ColumnDef::new(Items::RegisteredDate).date().not_null())
        .col(ColumnDef::new(Items::Sungsang).text().not_null())
        .col(
            ColumnDef::new(Items::OriginPrice)
                .big_integer()
                .not_null()
                .check(Expr::col(Items::OriginPrice).gte(0)),
        )
        .col(
            ColumnDef::new(Items::DiscountRateBp)
                .integer()
                .not_null()
                .check(Expr::col(Items::DiscountRateBp).between(0, 9_990)),
        )
        .col(
            ColumnDef::new(Items::DiscountPrice)
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(Items::RealPrice).big_integer().not_null())
        .col(counter(Items::Sales))
        .col(counter(Items::Views))
        .col(counter(Items::ReviewCount))
        .col(counter(Items::StarSum))
        .col(counter(Items::StarAvgCenti))
        .col(instant(backend, Items::DeletedAt).null())
        .col(instant(backend, Items::CreatedAt).not_null())
        .col(instant(backend, Items::UpdatedAt).not_null())
        .col(
            ColumnDef::new(Items::Version)
                .big_integer()
                .not_null()
                .default(1),
        );
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

pub(super) fn item_categories_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(ItemCategories::Table)
        .col(
            ColumnDef::new(ItemCategories::ItemId)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(ItemCategories::Category)
                .string_len(16)
                .not_null(),
        )
        .primary_key(
            Index::create()
                .col(ItemCategories::ItemId)
                .col(ItemCategories::Category),
        )
        .foreign_key(
            ForeignKey::create()
                .name("fk_item_categories_item")
                .from(ItemCategories::Table, ItemCategories::ItemId)
                .to(Items::Table, Items::Id)
                .on_delete(ForeignKeyAction::Cascade),
        );
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

/// One index per sort key ending in the id tiebreak; the live-item count; the brand filter.
pub(super) fn items_indexes() -> Vec<IndexCreateStatement> {
    let sort_keys = [
        ("idx_items_sales", Items::Sales, IndexOrder::Desc),
        ("idx_items_newest", Items::CreatedAt, IndexOrder::Desc),
        ("idx_items_price_high", Items::RealPrice, IndexOrder::Desc),
        ("idx_items_price_low", Items::RealPrice, IndexOrder::Asc),
        (
            "idx_items_discount_high",
            Items::DiscountRateBp,
            IndexOrder::Desc,
        ),
        (
            "idx_items_discount_low",
            Items::DiscountRateBp,
            IndexOrder::Asc,
        ),
        (
            "idx_items_review_count",
            Items::ReviewCount,
            IndexOrder::Desc,
        ),
        ("idx_items_star_avg", Items::StarAvgCenti, IndexOrder::Desc),
    ];
    let mut indexes: Vec<IndexCreateStatement> = sort_keys
        .into_iter()
        .map(|(name, key, order)| {
            Index::create()
                .name(name)
                .table(Items::Table)
                .col((key, order))
                .col(Items::Id)
                .to_owned()
        })
        .collect();
    indexes.push(
        Index::create()
            .name("idx_items_live")
            .table(Items::Table)
            .col(Items::DeletedAt)
            .col(Items::Id)
            .to_owned(),
    );
    indexes.push(
        Index::create()
            .name("idx_items_enterprise")
            .table(Items::Table)
            .col(Items::Enterprise)
            .col(Items::Id)
            .to_owned(),
    );
    indexes
}

/// A counter starting at zero.
fn counter(column: Items) -> ColumnDef {
    ColumnDef::new(column)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

/// An instant kept to the microsecond: `timestamp with time zone` on PostgreSQL, `DATETIME(6)`
/// on MySQL (whose plain `TIMESTAMP`/`DATETIME` drop the fraction, and whose `TIMESTAMP` ends in
/// 2038), RFC 3339 text on SQLite.
fn instant(backend: DbBackend, column: Items) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("DATETIME(6)"),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

/// MySQL tables get an explicit charset: the server's default may be latin1 (Korean would not
/// fit) and a binary collation compares like PostgreSQL and SQLite do, so an exact brand match
/// is exact everywhere. Case-insensitive search lower-cases both sides explicitly instead.
fn mysql_table_options(backend: DbBackend, table: &mut TableCreateStatement) {
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_bin");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DDL every backend receives, to read when changing this file.
    fn ddl(backend: DbBackend) -> Vec<String> {
        let mut statements = vec![
            backend.build(&items_table(backend)).sql,
            backend.build(&item_categories_table(backend)).sql,
        ];
        statements.extend(items_indexes().iter().map(|index| backend.build(index).sql));
        statements
    }

    #[test]
    fn instants_keep_microseconds_on_every_backend() {
        let mysql = ddl(DbBackend::MySql).join("\n");
        assert!(
            mysql.contains("`created_at` DATETIME(6) NOT NULL"),
            "{mysql}"
        );
        assert!(
            mysql.contains("CHARSET=utf8mb4 COLLATE=utf8mb4_bin"),
            "{mysql}"
        );
        let postgres = ddl(DbBackend::Postgres).join("\n");
        assert!(
            postgres.contains("\"created_at\" timestamp with time zone NOT NULL"),
            "{postgres}"
        );
        let sqlite = ddl(DbBackend::Sqlite).join("\n");
        assert!(
            sqlite.contains("\"created_at\" timestamp_with_timezone_text NOT NULL"),
            "{sqlite}"
        );
    }

    #[test]
    fn sort_indexes_carry_their_direction() {
        let postgres = ddl(DbBackend::Postgres);
        for line in [
            r#"CREATE INDEX "idx_items_sales" ON "items" ("sales" DESC, "id")"#,
            r#"CREATE INDEX "idx_items_price_low" ON "items" ("real_price" ASC, "id")"#,
            r#"CREATE INDEX "idx_items_live" ON "items" ("deleted_at", "id")"#,
        ] {
            assert!(
                postgres.iter().any(|statement| statement == line),
                "{postgres:#?}"
            );
        }
        let mysql = ddl(DbBackend::MySql);
        assert!(
            mysql.contains(
                &"CREATE INDEX `idx_items_newest` ON `items` (`created_at` DESC, `id`)".to_owned()
            ),
            "{mysql:#?}"
        );
    }
}
