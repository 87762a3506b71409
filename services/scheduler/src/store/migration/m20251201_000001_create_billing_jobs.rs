//! `billing_jobs` (one row per subscription) and `billing_attempts` (every charge attempt, for
//! operators).
//!
//! Dates are SQL `DATE`s (business dates; SQLite keeps `YYYY-MM-DD` text, which orders like the
//! dates). The lease deadline is epoch milliseconds in a `BIGINT`: it is compared on every
//! claim, and an integer compares the same way on every backend, where instants stored as text
//! on SQLite would depend on their formatting. The claim walks `idx_billing_jobs_due`
//! (`status, next_billing_date`): due jobs are a small prefix of each billable status.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum BillingJobs {
    Table,
    SubscriptionId,
    UserId,
    ItemId,
    ItemName,
    Quantity,
    UnitPrice,
    PeriodDays,
    OriginOrderId,
    Status,
    NextBillingDate,
    LastBilledDate,
    Cycle,
    FailedAttempts,
    NextAttemptDate,
    StateVersion,
    LeaseOwner,
    LeaseUntilMs,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum BillingAttempts {
    Table,
    Id,
    SubscriptionId,
    Cycle,
    Attempt,
    Outcome,
    Reason,
    AsOf,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(billing_jobs_table(backend)).await?;
        manager
            .create_table(billing_attempts_table(backend))
            .await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }
}

pub(super) fn billing_jobs_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(BillingJobs::Table)
        .col(
            ColumnDef::new(BillingJobs::SubscriptionId)
                .big_integer()
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(BillingJobs::UserId).big_integer().not_null())
        .col(ColumnDef::new(BillingJobs::ItemId).big_integer().not_null())
        .col(
            ColumnDef::new(BillingJobs::ItemName)
                .string_len(255)
                .not_null(),
        )
        .col(ColumnDef::new(BillingJobs::Quantity).integer().not_null())
        .col(
            ColumnDef::new(BillingJobs::UnitPrice)
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(BillingJobs::PeriodDays).integer().not_null())
        .col(
            ColumnDef::new(BillingJobs::OriginOrderId)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(BillingJobs::Status)
                .string_len(16)
                .not_null(),
        )
        .col(
            ColumnDef::new(BillingJobs::NextBillingDate)
                .date()
                .not_null(),
        )
        .col(ColumnDef::new(BillingJobs::LastBilledDate).date().null())
        .col(ColumnDef::new(BillingJobs::Cycle).integer().not_null())
        .col(
            ColumnDef::new(BillingJobs::FailedAttempts)
                .integer()
                .not_null()
                .default(0),
        )
        .col(ColumnDef::new(BillingJobs::NextAttemptDate).date().null())
        .col(
            ColumnDef::new(BillingJobs::StateVersion)
                .big_integer()
                .not_null()
                .default(0),
        )
        .col(
            ColumnDef::new(BillingJobs::LeaseOwner)
                .string_len(100)
                .null(),
        )
        .col(
            ColumnDef::new(BillingJobs::LeaseUntilMs)
                .big_integer()
                .null(),
        )
        .col(instant(backend, BillingJobs::UpdatedAt).not_null());
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

pub(super) fn billing_attempts_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(BillingAttempts::Table)
        .col(
            ColumnDef::new(BillingAttempts::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(BillingAttempts::SubscriptionId)
                .big_integer()
                .not_null(),
        )
        .col(ColumnDef::new(BillingAttempts::Cycle).integer().not_null())
        .col(
            ColumnDef::new(BillingAttempts::Attempt)
                .integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(BillingAttempts::Outcome)
                .string_len(16)
                .not_null(),
        )
        .col(
            ColumnDef::new(BillingAttempts::Reason)
                .string_len(500)
                .not_null(),
        )
        .col(ColumnDef::new(BillingAttempts::AsOf).date().not_null())
        .col(instant_column(backend, BillingAttempts::At).not_null());
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

pub(super) fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("idx_billing_jobs_due")
            .table(BillingJobs::Table)
            .col(BillingJobs::Status)
            .col(BillingJobs::NextBillingDate)
            .to_owned(),
        Index::create()
            .name("idx_billing_attempts_subscription")
            .table(BillingAttempts::Table)
            .col(BillingAttempts::SubscriptionId)
            .col(BillingAttempts::Id)
            .to_owned(),
    ]
}

/// An instant to the microsecond: `timestamp with time zone` on PostgreSQL, `DATETIME(6)` on
/// MySQL (whose plain types drop the fraction), RFC 3339 text on SQLite.
fn instant(backend: DbBackend, column: BillingJobs) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("DATETIME(6)"),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

fn instant_column(backend: DbBackend, column: BillingAttempts) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("DATETIME(6)"),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

/// InnoDB (row locks, `SKIP LOCKED`) with utf8mb4 so Korean item names fit.
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

    fn ddl(backend: DbBackend) -> String {
        let mut statements = vec![
            backend.build(&billing_jobs_table(backend)).sql,
            backend.build(&billing_attempts_table(backend)).sql,
        ];
        statements.extend(indexes().iter().map(|index| backend.build(index).sql));
        statements.join("\n")
    }

    #[test]
    fn every_backend_gets_dates_integer_leases_and_its_instant_type() {
        let postgres = ddl(DbBackend::Postgres);
        for expected in [
            r#""subscription_id" bigint NOT NULL PRIMARY KEY"#,
            r#""next_billing_date" date NOT NULL"#,
            r#""lease_until_ms" bigint NULL"#,
            r#""updated_at" timestamp with time zone NOT NULL"#,
            r#"CREATE INDEX "idx_billing_jobs_due" ON "billing_jobs" ("status", "next_billing_date")"#,
        ] {
            assert!(postgres.contains(expected), "{expected}\n{postgres}");
        }
        let mysql = ddl(DbBackend::MySql);
        for expected in [
            "`at` DATETIME(6) NOT NULL",
            "ENGINE=InnoDB",
            "CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        ] {
            assert!(mysql.contains(expected), "{expected}\n{mysql}");
        }
        let sqlite = ddl(DbBackend::Sqlite);
        assert!(
            sqlite.contains(r#""next_attempt_date" date_text NULL"#)
                || sqlite.contains(r#""next_attempt_date" date NULL"#),
            "{sqlite}"
        );
    }
}
