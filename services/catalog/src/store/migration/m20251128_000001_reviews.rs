//! `reviews`: one row per review, deleted ones included (soft delete).
//!
//! Once per (order, item) among live reviews: `live_order_id` holds the order id while the
//! review is live and NULL once it is deleted, and the unique index `(live_order_id, item_id)`
//! refuses a second live review of one purchase, even when two requests race (the second insert
//! fails on the index). NULLs never collide in a unique index on SQLite, PostgreSQL and MySQL
//! alike, so a deleted review frees its slot: the buyer may write a new one. A partial index
//! (`WHERE deleted_at IS NULL`) would say the same, but MySQL has none.
//!
//! No foreign key to `items`: on MySQL the key check takes a shared lock on the item row when a
//! review is inserted, and the counter update that follows in the same transaction needs an
//! exclusive one, so two reviews of one item written at once would deadlock. The store checks
//! that the item is live in the same transaction instead (the counter update must hit its row).
//!
//! The list indexes start with the item (or the author) and follow the sort, so a page of one
//! item's reviews is a walk of the index in order (backwards for the descending sorts).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Reviews {
    Table,
    Id,
    ItemId,
    OrderId,
    UserId,
    DisplayName,
    Star,
    Content,
    LiveOrderId,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(reviews_table(backend)).await?;
        for index in reviews_indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }
}

pub(super) fn reviews_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(Reviews::Table)
        .col(
            ColumnDef::new(Reviews::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(ColumnDef::new(Reviews::ItemId).big_integer().not_null())
        .col(ColumnDef::new(Reviews::OrderId).big_integer().not_null())
        .col(ColumnDef::new(Reviews::UserId).big_integer().not_null())
        // The user service allows 2–20 characters; room to spare for a later change there.
        .col(
            ColumnDef::new(Reviews::DisplayName)
                .string_len(100)
                .not_null(),
        )
        .col(
            ColumnDef::new(Reviews::Star)
                .integer()
                .not_null()
                .check(Expr::col(Reviews::Star).between(1, 5)),
        )
        .col(ColumnDef::new(Reviews::Content).text().not_null())
        .col(ColumnDef::new(Reviews::LiveOrderId).big_integer().null())
        .col(instant(backend, Reviews::DeletedAt).null())
        .col(instant(backend, Reviews::CreatedAt).not_null())
        .col(instant(backend, Reviews::UpdatedAt).not_null());
    if backend == DbBackend::MySql {
        // As the other tables (see the first migration): Korean needs utf8mb4.
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_bin");
    }
    table.to_owned()
}

pub(super) fn reviews_indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("uq_reviews_live_purchase")
            .table(Reviews::Table)
            .col(Reviews::LiveOrderId)
            .col(Reviews::ItemId)
            .unique()
            .to_owned(),
        // NEWEST / OLDEST of one item.
        Index::create()
            .name("idx_reviews_item_created")
            .table(Reviews::Table)
            .col(Reviews::ItemId)
            .col(Reviews::CreatedAt)
            .col(Reviews::Id)
            .to_owned(),
        // STAR_H / STAR_L of one item.
        Index::create()
            .name("idx_reviews_item_star")
            .table(Reviews::Table)
            .col(Reviews::ItemId)
            .col(Reviews::Star)
            .col(Reviews::CreatedAt)
            .col(Reviews::Id)
            .to_owned(),
        // One author's reviews.
        Index::create()
            .name("idx_reviews_user_created")
            .table(Reviews::Table)
            .col(Reviews::UserId)
            .col(Reviews::CreatedAt)
            .col(Reviews::Id)
            .to_owned(),
    ]
}

/// The same instant types as `items` (see the first migration).
fn instant(backend: DbBackend, column: Reviews) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("DATETIME(6)"),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_review_per_purchase_on_every_backend() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            let statements: Vec<String> = reviews_indexes()
                .iter()
                .map(|index| backend.build(index).sql)
                .collect();
            assert!(
                statements[0].starts_with("CREATE UNIQUE INDEX"),
                "{backend:?}: {statements:#?}"
            );
        }
        let mysql = DbBackend::MySql.build(&reviews_table(DbBackend::MySql)).sql;
        assert!(
            mysql.contains("`created_at` DATETIME(6) NOT NULL"),
            "{mysql}"
        );
        assert!(mysql.contains("CHECK (`star` BETWEEN 1 AND 5)"), "{mysql}");
        assert!(!mysql.contains("FOREIGN KEY"), "{mysql}");
    }
}
