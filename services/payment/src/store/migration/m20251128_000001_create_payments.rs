//! The payment tables.
//!
//! - `payments`: one row per attempt to pay an order (a ready at the PG). `ready_slot` holds the
//!   order id while the attempt is READY and NULL otherwise; its unique index is what allows
//!   at most one live READY attempt per order even when two readies race (a unique index on a
//!   nullable column admits many NULLs on every backend, unlike a partial index, which MySQL
//!   lacks).
//! - `ready_keys`: the `Idempotency-Key` of each ready, per user, with the attempt it answered.
//! - `charges`: renewal charges, unique per `(subscription_id, cycle)`.
//! - `subscription_links`: which subscription was started by which order (whose PG key it
//!   bills), and whether it is still active.
//! - `subscription_keys`: the PG subscription key (SID) an order's first payment issued.
//!
//! Leases are epoch milliseconds in a `BIGINT`, compared as numbers on every backend (SQLite
//! keeps instants as text, where comparing two differently formatted instants would be wrong).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Payments {
    Table,
    Id,
    OrderId,
    UserId,
    Contract,
    PartnerOrderId,
    Tid,
    Status,
    Amount,
    ItemName,
    Quantity,
    NextRedirectPcUrl,
    NextRedirectMobileUrl,
    NextRedirectAppUrl,
    ReadySlot,
    PgToken,
    Aid,
    Sid,
    LeaseUntilMs,
    RefundMaybeSent,
    RefundedAmount,
    OrderConfirmed,
    FailureReason,
    CreatedAt,
    ApprovedAt,
    CanceledAt,
    RefundedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ReadyKeys {
    Table,
    UserId,
    IdempotencyKey,
    OrderId,
    PaymentId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Charges {
    Table,
    Id,
    SubscriptionId,
    Cycle,
    PartnerOrderId,
    UserId,
    OriginOrderId,
    Amount,
    ItemName,
    Quantity,
    State,
    Attempt,
    MaybeSent,
    LeaseOwner,
    LeaseUntilMs,
    Tid,
    Aid,
    DeclineCode,
    DeclineMessage,
    ChargedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum SubscriptionLinks {
    Table,
    SubscriptionId,
    OriginOrderId,
    Active,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum SubscriptionKeys {
    Table,
    OriginOrderId,
    Sid,
    UserId,
    Active,
    CreatedAt,
    InactivatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        for table in tables(backend) {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }
}

/// An instant to the microsecond: `timestamp with time zone` on PostgreSQL, `DATETIME(6)` on
/// MySQL (its plain types drop the fraction), RFC 3339 text on SQLite.
fn instant<T: IntoIden>(backend: DbBackend, column: T) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("DATETIME(6)"),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

fn flag<T: IntoIden>(column: T) -> ColumnDef {
    ColumnDef::new(column)
        .boolean()
        .not_null()
        .default(false)
        .to_owned()
}

/// MySQL tables get utf8mb4 (Korean item names) and a binary collation (ids compare exactly).
fn finish(backend: DbBackend, table: &mut TableCreateStatement) -> TableCreateStatement {
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_bin");
    }
    table.to_owned()
}

pub(super) fn tables(backend: DbBackend) -> Vec<TableCreateStatement> {
    let payments = finish(
        backend,
        Table::create()
            .table(Payments::Table)
            .col(
                ColumnDef::new(Payments::Id)
                    .big_integer()
                    .not_null()
                    .auto_increment()
                    .primary_key(),
            )
            .col(ColumnDef::new(Payments::OrderId).big_integer().not_null())
            .col(ColumnDef::new(Payments::UserId).big_integer().not_null())
            .col(ColumnDef::new(Payments::Contract).string_len(20).not_null())
            .col(
                ColumnDef::new(Payments::PartnerOrderId)
                    .string_len(100)
                    .not_null(),
            )
            .col(ColumnDef::new(Payments::Tid).string_len(100).not_null())
            .col(ColumnDef::new(Payments::Status).string_len(20).not_null())
            .col(ColumnDef::new(Payments::Amount).big_integer().not_null())
            .col(
                ColumnDef::new(Payments::ItemName)
                    .string_len(255)
                    .not_null(),
            )
            .col(ColumnDef::new(Payments::Quantity).big_integer().not_null())
            .col(
                ColumnDef::new(Payments::NextRedirectPcUrl)
                    .text()
                    .not_null(),
            )
            .col(
                ColumnDef::new(Payments::NextRedirectMobileUrl)
                    .text()
                    .not_null(),
            )
            .col(
                ColumnDef::new(Payments::NextRedirectAppUrl)
                    .text()
                    .not_null(),
            )
            .col(ColumnDef::new(Payments::ReadySlot).big_integer().null())
            .col(ColumnDef::new(Payments::PgToken).string_len(255).null())
            .col(ColumnDef::new(Payments::Aid).string_len(100).null())
            .col(ColumnDef::new(Payments::Sid).string_len(100).null())
            .col(ColumnDef::new(Payments::LeaseUntilMs).big_integer().null())
            .col(flag(Payments::RefundMaybeSent))
            .col(
                ColumnDef::new(Payments::RefundedAmount)
                    .big_integer()
                    .not_null()
                    .default(0),
            )
            .col(flag(Payments::OrderConfirmed))
            .col(
                ColumnDef::new(Payments::FailureReason)
                    .string_len(50)
                    .null(),
            )
            .col(instant(backend, Payments::CreatedAt).not_null())
            .col(instant(backend, Payments::ApprovedAt).null())
            .col(instant(backend, Payments::CanceledAt).null())
            .col(instant(backend, Payments::RefundedAt).null())
            .col(instant(backend, Payments::UpdatedAt).not_null()),
    );
    let ready_keys = finish(
        backend,
        Table::create()
            .table(ReadyKeys::Table)
            .col(ColumnDef::new(ReadyKeys::UserId).big_integer().not_null())
            .col(
                ColumnDef::new(ReadyKeys::IdempotencyKey)
                    .string_len(200)
                    .not_null(),
            )
            .col(ColumnDef::new(ReadyKeys::OrderId).big_integer().not_null())
            .col(
                ColumnDef::new(ReadyKeys::PaymentId)
                    .big_integer()
                    .not_null(),
            )
            .col(instant(backend, ReadyKeys::CreatedAt).not_null())
            .primary_key(
                Index::create()
                    .col(ReadyKeys::UserId)
                    .col(ReadyKeys::IdempotencyKey),
            ),
    );
    let charges = finish(
        backend,
        Table::create()
            .table(Charges::Table)
            .col(
                ColumnDef::new(Charges::Id)
                    .big_integer()
                    .not_null()
                    .auto_increment()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(Charges::SubscriptionId)
                    .big_integer()
                    .not_null(),
            )
            .col(ColumnDef::new(Charges::Cycle).integer().not_null())
            .col(
                ColumnDef::new(Charges::PartnerOrderId)
                    .string_len(100)
                    .not_null(),
            )
            .col(ColumnDef::new(Charges::UserId).big_integer().not_null())
            .col(
                ColumnDef::new(Charges::OriginOrderId)
                    .big_integer()
                    .not_null(),
            )
            .col(ColumnDef::new(Charges::Amount).big_integer().not_null())
            .col(ColumnDef::new(Charges::ItemName).string_len(255).not_null())
            .col(ColumnDef::new(Charges::Quantity).big_integer().not_null())
            .col(ColumnDef::new(Charges::State).string_len(20).not_null())
            .col(ColumnDef::new(Charges::Attempt).integer().not_null())
            .col(flag(Charges::MaybeSent))
            .col(ColumnDef::new(Charges::LeaseOwner).string_len(64).null())
            .col(ColumnDef::new(Charges::LeaseUntilMs).big_integer().null())
            .col(ColumnDef::new(Charges::Tid).string_len(100).null())
            .col(ColumnDef::new(Charges::Aid).string_len(100).null())
            .col(ColumnDef::new(Charges::DeclineCode).string_len(50).null())
            .col(ColumnDef::new(Charges::DeclineMessage).text().null())
            .col(instant(backend, Charges::ChargedAt).null())
            .col(instant(backend, Charges::CreatedAt).not_null())
            .col(instant(backend, Charges::UpdatedAt).not_null()),
    );
    let links = finish(
        backend,
        Table::create()
            .table(SubscriptionLinks::Table)
            .col(
                ColumnDef::new(SubscriptionLinks::SubscriptionId)
                    .big_integer()
                    .not_null()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(SubscriptionLinks::OriginOrderId)
                    .big_integer()
                    .not_null(),
            )
            .col(
                ColumnDef::new(SubscriptionLinks::Active)
                    .boolean()
                    .not_null()
                    .default(true),
            )
            .col(instant(backend, SubscriptionLinks::UpdatedAt).not_null()),
    );
    let keys = finish(
        backend,
        Table::create()
            .table(SubscriptionKeys::Table)
            .col(
                ColumnDef::new(SubscriptionKeys::OriginOrderId)
                    .big_integer()
                    .not_null()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(SubscriptionKeys::Sid)
                    .string_len(100)
                    .not_null(),
            )
            .col(
                ColumnDef::new(SubscriptionKeys::UserId)
                    .big_integer()
                    .not_null(),
            )
            .col(
                ColumnDef::new(SubscriptionKeys::Active)
                    .boolean()
                    .not_null()
                    .default(true),
            )
            .col(instant(backend, SubscriptionKeys::CreatedAt).not_null())
            .col(instant(backend, SubscriptionKeys::InactivatedAt).null()),
    );
    vec![payments, ready_keys, charges, links, keys]
}

pub(super) fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("idx_payments_order")
            .table(Payments::Table)
            .col(Payments::OrderId)
            .col(Payments::Id)
            .to_owned(),
        Index::create()
            .name("uq_payments_ready_slot")
            .table(Payments::Table)
            .col(Payments::ReadySlot)
            .unique()
            .to_owned(),
        // The reconciler's scan: approved or refunded, not yet confirmed by the order service.
        Index::create()
            .name("idx_payments_unconfirmed")
            .table(Payments::Table)
            .col(Payments::OrderConfirmed)
            .col(Payments::Status)
            .to_owned(),
        Index::create()
            .name("uq_charges_identity")
            .table(Charges::Table)
            .col(Charges::SubscriptionId)
            .col(Charges::Cycle)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_subscription_links_origin")
            .table(SubscriptionLinks::Table)
            .col(SubscriptionLinks::OriginOrderId)
            .col(SubscriptionLinks::Active)
            .to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl(backend: DbBackend) -> String {
        let mut statements: Vec<String> = tables(backend)
            .iter()
            .map(|table| backend.build(table).sql)
            .collect();
        statements.extend(indexes().iter().map(|index| backend.build(index).sql));
        statements.join("\n")
    }

    #[test]
    fn the_identity_of_a_charge_is_unique_on_every_backend() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            let ddl = ddl(backend);
            assert!(ddl.contains("CREATE UNIQUE INDEX"), "{ddl}");
            assert!(ddl.contains("uq_charges_identity"), "{ddl}");
            assert!(ddl.contains("uq_payments_ready_slot"), "{ddl}");
        }
    }

    #[test]
    fn instants_keep_microseconds_and_mysql_speaks_utf8mb4() {
        let mysql = ddl(DbBackend::MySql);
        assert!(
            mysql.contains("`created_at` DATETIME(6) NOT NULL"),
            "{mysql}"
        );
        assert!(
            mysql.contains("CHARSET=utf8mb4 COLLATE=utf8mb4_bin"),
            "{mysql}"
        );
        let postgres = ddl(DbBackend::Postgres);
        assert!(
            postgres.contains("\"approved_at\" timestamp with time zone NULL"),
            "{postgres}"
        );
    }
}
