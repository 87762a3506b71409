//! View folding: `item_view_folds` and `items.views_folded_through`.
//!
//! Views are counted per item and business day in HyperLogLog sketches of the key-value store
//! and folded into `items.views` once the day is over (see `crate::views`). The fold of one
//! (item, day) writes a row here, in the same transaction as the `views = views + n` of that
//! item: the primary key is what makes a day fold at most once, even when two replicas fold
//! at the same time or a fold is retried after a crash half-way.
//!
//! `items.views_folded_through` is the last day already in `items.views`, written in the same
//! transaction. Item detail reads it with the row it already reads, so it knows which days'
//! sketches to add to the stored total without another query. NULL: no day folded yet.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Items {
    Table,
    ViewsFoldedThrough,
}

#[derive(DeriveIden, Clone, Copy)]
enum ItemViewFolds {
    Table,
    ItemId,
    Day,
    Views,
    FoldedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .alter_table(
                Table::alter()
                    .table(Items::Table)
                    .add_column(ColumnDef::new(Items::ViewsFoldedThrough).date().null())
                    .to_owned(),
            )
            .await?;
        manager.create_table(item_view_folds_table(backend)).await
    }
}

pub(super) fn item_view_folds_table(backend: DbBackend) -> TableCreateStatement {
    let mut folded_at = ColumnDef::new(ItemViewFolds::FoldedAt);
    // The same instant types as `items` (see the first migration).
    match backend {
        DbBackend::MySql => folded_at.custom("DATETIME(6)"),
        _ => folded_at.timestamp_with_time_zone(),
    };
    let mut table = Table::create();
    table
        .table(ItemViewFolds::Table)
        .col(
            ColumnDef::new(ItemViewFolds::ItemId)
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(ItemViewFolds::Day).date().not_null())
        // What was added to `items.views`, for audits; the key is what guards.
        .col(
            ColumnDef::new(ItemViewFolds::Views)
                .big_integer()
                .not_null(),
        )
        .col(folded_at.not_null())
        .primary_key(
            Index::create()
                .col(ItemViewFolds::ItemId)
                .col(ItemViewFolds::Day),
        );
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_bin");
    }
    table.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_and_a_day_are_the_primary_key_on_every_backend() {
        for backend in [DbBackend::MySql, DbBackend::Postgres, DbBackend::Sqlite] {
            let sql = backend.build(&item_view_folds_table(backend)).sql;
            let key = match backend {
                DbBackend::MySql => "PRIMARY KEY (`item_id`, `day`)",
                _ => r#"PRIMARY KEY ("item_id", "day")"#,
            };
            assert!(sql.contains(key), "{sql}");
        }
    }
}
