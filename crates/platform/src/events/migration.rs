//! The event tables, as migrations each service adds to its own `Migrator`.
//!
//! Every service has its own database (or PostgreSQL schema, chosen by the search path of its
//! connection), so the tables are created unqualified and each service owns a private copy. The
//! names are stable and recorded in the service's `seaql_migrations` table: never rename or edit
//! one; a change is a new migration here, appended to [`migrations`].
//!
//! The same statements run on SQLite, PostgreSQL and MySQL/MariaDB. Where the backends differ:
//! instants are `DATETIME(6)` on MySQL (microseconds, like the others), payloads are `LONGBLOB`
//! there (`BLOB` stops at 64 KiB), tables are InnoDB with the binary utf8mb4 collation (ids
//! compare byte for byte, as on the other backends), and the "unpublished rows in id order"
//! index is a partial index where the backend has them.
//!
//! ```ignore
//! fn migrations() -> Vec<Box<dyn MigrationTrait>> {
//!     let mut all: Vec<Box<dyn MigrationTrait>> = vec![Box::new(m20251124_000001_create_orders::Migration)];
//!     all.extend(pillivery_platform::events::migration::migrations());
//!     all
//! }
//! ```

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

/// The event migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateOutboxEvents),
        Box::new(CreateInboxEvents),
        Box::new(CreateDeadLetters),
    ]
}

/// `outbox_events` and its indexes.
pub struct CreateOutboxEvents;
/// `inbox_events` and its pruning index.
pub struct CreateInboxEvents;
/// `dead_letters` and its lookup index.
pub struct CreateDeadLetters;

impl MigrationName for CreateOutboxEvents {
    fn name(&self) -> &str {
        "m20251201_000001_create_outbox_events"
    }
}

impl MigrationName for CreateInboxEvents {
    fn name(&self) -> &str {
        "m20251201_000002_create_inbox_events"
    }
}

impl MigrationName for CreateDeadLetters {
    fn name(&self) -> &str {
        "m20251201_000003_create_dead_letters"
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum OutboxEvents {
    Table,
    Id,
    EventId,
    Stream,
    EventType,
    AggregateId,
    Payload,
    Traceparent,
    OccurredAt,
    PublishedAt,
    Attempts,
}

#[derive(DeriveIden, Clone, Copy)]
enum InboxEvents {
    Table,
    Consumer,
    EventId,
    ProcessedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum DeadLetters {
    Table,
    Id,
    Consumer,
    Stream,
    EventId,
    EventType,
    AggregateId,
    Payload,
    Traceparent,
    OccurredAt,
    Reason,
    Attempts,
    FailedAt,
    ReplayedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutboxEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(outbox_table(backend)).await?;
        manager
            .get_connection()
            .execute_unprepared(&unpublished_index_sql(backend))
            .await?;
        if backend != DbBackend::MySql {
            // MySQL's (published_at, id) index above already serves range scans on
            // published_at; the partial index of the others holds unpublished rows only.
            manager
                .create_index(
                    Index::create()
                        .name("idx_outbox_events_published_at")
                        .table(OutboxEvents::Table)
                        .col(OutboxEvents::PublishedAt)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateInboxEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(inbox_table(backend)).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_inbox_events_processed_at")
                    .table(InboxEvents::Table)
                    .col(InboxEvents::ProcessedAt)
                    .to_owned(),
            )
            .await
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDeadLetters {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(dead_letters_table(backend)).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_dead_letters_consumer_event")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::Consumer)
                    .col(DeadLetters::EventId)
                    .to_owned(),
            )
            .await
    }
}

/// A microsecond instant: `timestamptz` on PostgreSQL, text in ISO form on SQLite, and
/// `DATETIME(6)` on MySQL (its `TIMESTAMP` ends in 2038 and converts time zones).
fn instant(backend: DbBackend, column: impl IntoIden) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("DATETIME(6)"),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

fn payload(backend: DbBackend, column: impl IntoIden) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("LONGBLOB"),
        _ => definition.blob(),
    };
    definition
}

fn mysql_table_options(backend: DbBackend, table: &mut TableCreateStatement) {
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_bin");
    }
}

fn outbox_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(OutboxEvents::Table)
        .col(
            // The id is the publish order: the relay publishes unpublished rows by ascending id.
            ColumnDef::new(OutboxEvents::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(OutboxEvents::EventId)
                .string_len(100)
                .not_null()
                .unique_key(),
        )
        .col(
            ColumnDef::new(OutboxEvents::Stream)
                .string_len(100)
                .not_null(),
        )
        .col(
            ColumnDef::new(OutboxEvents::EventType)
                .string_len(100)
                .not_null(),
        )
        .col(
            ColumnDef::new(OutboxEvents::AggregateId)
                .string_len(255)
                .not_null(),
        )
        .col(payload(backend, OutboxEvents::Payload).not_null())
        .col(
            ColumnDef::new(OutboxEvents::Traceparent)
                .string_len(100)
                .null(),
        )
        .col(instant(backend, OutboxEvents::OccurredAt).not_null())
        .col(instant(backend, OutboxEvents::PublishedAt).null())
        .col(
            ColumnDef::new(OutboxEvents::Attempts)
                .integer()
                .not_null()
                .default(0),
        );
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

/// The relay's hot query is `WHERE published_at IS NULL ORDER BY id LIMIT n`. PostgreSQL and
/// SQLite get a partial index on `id` holding only unpublished rows (tiny, and already in the
/// order the relay wants). MySQL has no partial indexes; there `(published_at, id)` serves it,
/// since MySQL looks up `IS NULL` like an equality and then reads the ids in order.
fn unpublished_index_sql(backend: DbBackend) -> String {
    match backend {
        DbBackend::MySql => {
            "CREATE INDEX idx_outbox_events_unpublished ON outbox_events (published_at, id)".into()
        }
        _ => "CREATE INDEX idx_outbox_events_unpublished ON outbox_events (id) WHERE published_at IS NULL"
            .into(),
    }
}

fn inbox_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(InboxEvents::Table)
        .col(
            ColumnDef::new(InboxEvents::Consumer)
                .string_len(100)
                .not_null(),
        )
        .col(
            ColumnDef::new(InboxEvents::EventId)
                .string_len(100)
                .not_null(),
        )
        .col(instant(backend, InboxEvents::ProcessedAt).not_null())
        .primary_key(
            // The key is what makes a redelivered event change nothing: a second insert of the
            // same (consumer, event) fails, or waits for the first transaction and then fails.
            Index::create()
                .name("pk_inbox_events")
                .col(InboxEvents::Consumer)
                .col(InboxEvents::EventId),
        );
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

fn dead_letters_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(DeadLetters::Table)
        .col(
            ColumnDef::new(DeadLetters::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(DeadLetters::Consumer)
                .string_len(100)
                .not_null(),
        )
        .col(
            ColumnDef::new(DeadLetters::Stream)
                .string_len(100)
                .not_null(),
        )
        .col(
            ColumnDef::new(DeadLetters::EventId)
                .string_len(100)
                .not_null(),
        )
        .col(
            ColumnDef::new(DeadLetters::EventType)
                .string_len(100)
                .not_null(),
        )
        .col(
            ColumnDef::new(DeadLetters::AggregateId)
                .string_len(255)
                .not_null(),
        )
        .col(payload(backend, DeadLetters::Payload).not_null())
        .col(
            ColumnDef::new(DeadLetters::Traceparent)
                .string_len(100)
                .null(),
        )
        .col(instant(backend, DeadLetters::OccurredAt).not_null())
        .col(ColumnDef::new(DeadLetters::Reason).text().not_null())
        .col(ColumnDef::new(DeadLetters::Attempts).integer().not_null())
        .col(instant(backend, DeadLetters::FailedAt).not_null())
        .col(instant(backend, DeadLetters::ReplayedAt).null());
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_ordered() {
        let names: Vec<String> = migrations()
            .iter()
            .map(|migration| migration.name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "m20251201_000001_create_outbox_events",
                "m20251201_000002_create_inbox_events",
                "m20251201_000003_create_dead_letters",
            ]
        );
    }

    #[test]
    fn mysql_gets_microsecond_instants_long_blobs_and_binary_collation() {
        let outbox = DbBackend::MySql.build(&outbox_table(DbBackend::MySql)).sql;
        assert!(
            outbox.contains("`occurred_at` DATETIME(6) NOT NULL"),
            "{outbox}"
        );
        assert!(
            outbox.contains("`published_at` DATETIME(6) NULL"),
            "{outbox}"
        );
        assert!(outbox.contains("`payload` LONGBLOB NOT NULL"), "{outbox}");
        assert!(outbox.contains("COLLATE=utf8mb4_bin"), "{outbox}");
        let inbox = DbBackend::MySql.build(&inbox_table(DbBackend::MySql)).sql;
        assert!(
            inbox.contains("PRIMARY KEY `pk_inbox_events` (`consumer`, `event_id`)"),
            "{inbox}"
        );
        let postgres = DbBackend::Postgres
            .build(&dead_letters_table(DbBackend::Postgres))
            .sql;
        assert!(
            postgres.contains(r#""payload" bytea NOT NULL"#),
            "{postgres}"
        );
        assert!(
            postgres.contains(r#""replayed_at" timestamp with time zone NULL"#),
            "{postgres}"
        );
    }
}
