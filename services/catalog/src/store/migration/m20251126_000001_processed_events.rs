//! `processed_events`: the catalog's inbox (SPEC section 8).
//!
//! One row per event whose effect the catalog has applied (today: the sales of a paid order or
//! a renewal). The row is written in the same transaction as the effect, and its primary key is
//! what makes a redelivered event change nothing: a second insert of the same id fails on the
//! key, and the store answers "already applied" without touching any counter.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ProcessedEvents {
    Table,
    EventId,
    ProcessedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(processed_events_table(backend)).await
    }
}

pub(super) fn processed_events_table(backend: DbBackend) -> TableCreateStatement {
    let mut processed_at = ColumnDef::new(ProcessedEvents::ProcessedAt);
    // The same instant types as `items` (see the first migration).
    match backend {
        DbBackend::MySql => processed_at.custom("DATETIME(6)"),
        _ => processed_at.timestamp_with_time_zone(),
    };
    let mut table = Table::create();
    table
        .table(ProcessedEvents::Table)
        .col(
            ColumnDef::new(ProcessedEvents::EventId)
                .string_len(100)
                .not_null()
                .primary_key(),
        )
        .col(processed_at.not_null());
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
    fn event_ids_are_the_primary_key_on_every_backend() {
        let mysql = DbBackend::MySql
            .build(&processed_events_table(DbBackend::MySql))
            .sql;
        assert!(
            mysql.contains("`event_id` varchar(100) NOT NULL PRIMARY KEY"),
            "{mysql}"
        );
        assert!(
            mysql.contains("`processed_at` DATETIME(6) NOT NULL"),
            "{mysql}"
        );
        let postgres = DbBackend::Postgres
            .build(&processed_events_table(DbBackend::Postgres))
            .sql;
        assert!(
            postgres.contains(r#""event_id" varchar(100) NOT NULL PRIMARY KEY"#),
            "{postgres}"
        );
    }
}
