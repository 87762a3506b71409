//! Carts, orders (with lines, status history and idempotency keys) and subscriptions.
//!
//! The uniqueness rules that keep concurrent requests correct live here, as constraints:
//! one cart per (user, kind); one line per (cart, item), so concurrent adds of one item meet on
//! one row; one idempotency row per (user, key), so concurrent checkouts with one key create one
//! order; one renewal order per (subscription, cycle); one subscription per (order, item).
//!
//! Instants are microsecond timestamps (`timestamp with time zone` on PostgreSQL,
//! `DATETIME(6)` on MySQL, RFC 3339 text on SQLite); billing dates are plain `DATE`s. MySQL
//! tables are InnoDB, utf8mb4 with the binary collation, like the catalog's.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
pub(super) enum Carts {
    Table,
    Id,
    UserId,
    Kind,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum CartLines {
    Table,
    CartId,
    ItemId,
    Quantity,
    PeriodDays,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Orders {
    Table,
    Id,
    UserId,
    Status,
    TotalQuantity,
    TotalOriginPrice,
    TotalDiscountPrice,
    TotalPrice,
    ReceiverName,
    ReceiverPhone,
    ReceiverCity,
    ReceiverDetailAddress,
    FromCart,
    SubscriptionId,
    Cycle,
    PaymentId,
    PaidAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OrderLines {
    Table,
    OrderId,
    LineNo,
    ItemId,
    ProductName,
    Thumbnail,
    Quantity,
    PeriodDays,
    OriginPrice,
    DiscountPrice,
    RealPrice,
    LineTotal,
}

#[derive(DeriveIden, Clone, Copy)]
enum OrderStatusHistory {
    Table,
    Id,
    OrderId,
    Status,
    At,
}

#[derive(DeriveIden, Clone, Copy)]
enum IdempotencyKeys {
    Table,
    UserId,
    IdempotencyKey,
    RequestHash,
    OrderId,
    Response,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Subscriptions {
    Table,
    Id,
    UserId,
    ItemId,
    ProductName,
    Quantity,
    PeriodDays,
    UnitOriginPrice,
    UnitDiscountPrice,
    UnitPrice,
    Status,
    AnchorDate,
    LastBilledDate,
    NextBillingDate,
    Cycle,
    FailedAttempts,
    OriginOrderId,
    Version,
    CreatedAt,
    UpdatedAt,
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

fn id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn big(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().to_owned()
}

fn int(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).integer().not_null().to_owned()
}

fn text(column: impl IntoIden, length: u32) -> ColumnDef {
    ColumnDef::new(column)
        .string_len(length)
        .not_null()
        .to_owned()
}

fn date(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).date().not_null().to_owned()
}

/// An instant kept to the microsecond on every backend (see the catalog's first migration).
fn instant(backend: DbBackend, column: impl IntoIden) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("DATETIME(6)"),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

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
    let carts = finish(
        backend,
        Table::create()
            .table(Carts::Table)
            .col(id(Carts::Id))
            .col(big(Carts::UserId))
            .col(text(Carts::Kind, 16))
            // Bumped by every write to the cart: the row lock that serialises them (and on
            // MySQL an UPDATE that changes nothing affects no row, so it must change something).
            .col(
                ColumnDef::new(Carts::Version)
                    .big_integer()
                    .not_null()
                    .default(1),
            )
            .col(instant(backend, Carts::CreatedAt).not_null())
            .col(instant(backend, Carts::UpdatedAt).not_null()),
    );
    let cart_lines = finish(
        backend,
        Table::create()
            .table(CartLines::Table)
            .col(big(CartLines::CartId))
            .col(big(CartLines::ItemId))
            .col(
                int(CartLines::Quantity)
                    .check(Expr::col(CartLines::Quantity).between(1, 99))
                    .to_owned(),
            )
            .col(ColumnDef::new(CartLines::PeriodDays).integer().null())
            .col(instant(backend, CartLines::CreatedAt).not_null())
            .col(instant(backend, CartLines::UpdatedAt).not_null())
            .primary_key(
                Index::create()
                    .col(CartLines::CartId)
                    .col(CartLines::ItemId),
            )
            .foreign_key(
                ForeignKey::create()
                    .name("fk_cart_lines_cart")
                    .from(CartLines::Table, CartLines::CartId)
                    .to(Carts::Table, Carts::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            ),
    );
    let orders = finish(
        backend,
        Table::create()
            .table(Orders::Table)
            .col(id(Orders::Id))
            .col(big(Orders::UserId))
            .col(text(Orders::Status, 20))
            .col(big(Orders::TotalQuantity))
            .col(big(Orders::TotalOriginPrice))
            .col(big(Orders::TotalDiscountPrice))
            .col(big(Orders::TotalPrice))
            .col(text(Orders::ReceiverName, 255))
            .col(text(Orders::ReceiverPhone, 20))
            .col(text(Orders::ReceiverCity, 255))
            .col(text(Orders::ReceiverDetailAddress, 255))
            .col(ColumnDef::new(Orders::FromCart).boolean().not_null())
            .col(ColumnDef::new(Orders::SubscriptionId).big_integer().null())
            .col(ColumnDef::new(Orders::Cycle).integer().null())
            .col(ColumnDef::new(Orders::PaymentId).string_len(200).null())
            .col(instant(backend, Orders::PaidAt).null())
            .col(instant(backend, Orders::CreatedAt).not_null())
            .col(instant(backend, Orders::UpdatedAt).not_null()),
    );
    let order_lines = finish(
        backend,
        Table::create()
            .table(OrderLines::Table)
            .col(big(OrderLines::OrderId))
            .col(int(OrderLines::LineNo))
            .col(big(OrderLines::ItemId))
            .col(text(OrderLines::ProductName, 255))
            .col(ColumnDef::new(OrderLines::Thumbnail).text().not_null())
            .col(int(OrderLines::Quantity))
            .col(ColumnDef::new(OrderLines::PeriodDays).integer().null())
            .col(big(OrderLines::OriginPrice))
            .col(big(OrderLines::DiscountPrice))
            .col(big(OrderLines::RealPrice))
            .col(big(OrderLines::LineTotal))
            .primary_key(
                Index::create()
                    .col(OrderLines::OrderId)
                    .col(OrderLines::LineNo),
            )
            .foreign_key(
                ForeignKey::create()
                    .name("fk_order_lines_order")
                    .from(OrderLines::Table, OrderLines::OrderId)
                    .to(Orders::Table, Orders::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            ),
    );
    let history = finish(
        backend,
        Table::create()
            .table(OrderStatusHistory::Table)
            .col(id(OrderStatusHistory::Id))
            .col(big(OrderStatusHistory::OrderId))
            .col(text(OrderStatusHistory::Status, 20))
            .col(instant(backend, OrderStatusHistory::At).not_null())
            .foreign_key(
                ForeignKey::create()
                    .name("fk_order_status_history_order")
                    .from(OrderStatusHistory::Table, OrderStatusHistory::OrderId)
                    .to(Orders::Table, Orders::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            ),
    );
    let idempotency = finish(
        backend,
        Table::create()
            .table(IdempotencyKeys::Table)
            .col(big(IdempotencyKeys::UserId))
            .col(text(IdempotencyKeys::IdempotencyKey, 200))
            .col(text(IdempotencyKeys::RequestHash, 64))
            // Filled in the same transaction that claimed the key, once the order exists.
            .col(
                ColumnDef::new(IdempotencyKeys::OrderId)
                    .big_integer()
                    .null(),
            )
            .col(ColumnDef::new(IdempotencyKeys::Response).blob().null())
            .col(instant(backend, IdempotencyKeys::CreatedAt).not_null())
            .primary_key(
                Index::create()
                    .col(IdempotencyKeys::UserId)
                    .col(IdempotencyKeys::IdempotencyKey),
            ),
    );
    let subscriptions = finish(
        backend,
        Table::create()
            .table(Subscriptions::Table)
            .col(id(Subscriptions::Id))
            .col(big(Subscriptions::UserId))
            .col(big(Subscriptions::ItemId))
            .col(text(Subscriptions::ProductName, 255))
            .col(int(Subscriptions::Quantity))
            .col(int(Subscriptions::PeriodDays))
            .col(big(Subscriptions::UnitOriginPrice))
            .col(big(Subscriptions::UnitDiscountPrice))
            .col(big(Subscriptions::UnitPrice))
            .col(text(Subscriptions::Status, 20))
            .col(date(Subscriptions::AnchorDate))
            .col(date(Subscriptions::LastBilledDate))
            .col(date(Subscriptions::NextBillingDate))
            .col(int(Subscriptions::Cycle))
            .col(int(Subscriptions::FailedAttempts))
            .col(big(Subscriptions::OriginOrderId))
            .col(big(Subscriptions::Version))
            .col(instant(backend, Subscriptions::CreatedAt).not_null())
            .col(instant(backend, Subscriptions::UpdatedAt).not_null()),
    );
    vec![
        carts,
        cart_lines,
        orders,
        order_lines,
        history,
        idempotency,
        subscriptions,
    ]
}

pub(super) fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("ux_carts_user_kind")
            .table(Carts::Table)
            .col(Carts::UserId)
            .col(Carts::Kind)
            .unique()
            .to_owned(),
        // History, newest first: walked backwards, with and without a status filter.
        Index::create()
            .name("idx_orders_user_created")
            .table(Orders::Table)
            .col(Orders::UserId)
            .col(Orders::CreatedAt)
            .col(Orders::Id)
            .to_owned(),
        Index::create()
            .name("idx_orders_user_status_created")
            .table(Orders::Table)
            .col(Orders::UserId)
            .col(Orders::Status)
            .col(Orders::CreatedAt)
            .col(Orders::Id)
            .to_owned(),
        // The unpaid-order sweep: REQUEST orders by age.
        Index::create()
            .name("idx_orders_status_created")
            .table(Orders::Table)
            .col(Orders::Status)
            .col(Orders::CreatedAt)
            .to_owned(),
        // One renewal order per cycle; NULLs (ordinary orders) never collide.
        Index::create()
            .name("ux_orders_subscription_cycle")
            .table(Orders::Table)
            .col(Orders::SubscriptionId)
            .col(Orders::Cycle)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_order_status_history_order")
            .table(OrderStatusHistory::Table)
            .col(OrderStatusHistory::OrderId)
            .col(OrderStatusHistory::Id)
            .to_owned(),
        Index::create()
            .name("idx_subscriptions_user")
            .table(Subscriptions::Table)
            .col(Subscriptions::UserId)
            .col(Subscriptions::Id)
            .to_owned(),
        Index::create()
            .name("ux_subscriptions_origin_item")
            .table(Subscriptions::Table)
            .col(Subscriptions::OriginOrderId)
            .col(Subscriptions::ItemId)
            .unique()
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
    fn instants_keep_microseconds_and_mysql_gets_its_charset() {
        let mysql = ddl(DbBackend::MySql);
        assert!(
            mysql.contains("`created_at` DATETIME(6) NOT NULL"),
            "{mysql}"
        );
        assert!(mysql.contains("`paid_at` DATETIME(6) NULL"), "{mysql}");
        assert!(
            mysql.contains("CHARSET=utf8mb4 COLLATE=utf8mb4_bin"),
            "{mysql}"
        );
        assert!(
            mysql.contains("`next_billing_date` date NOT NULL"),
            "{mysql}"
        );
        let postgres = ddl(DbBackend::Postgres);
        assert!(
            postgres.contains("\"at\" timestamp with time zone NOT NULL"),
            "{postgres}"
        );
    }

    #[test]
    fn the_concurrency_guards_are_unique() {
        let postgres = ddl(DbBackend::Postgres);
        for line in [
            r#"CREATE UNIQUE INDEX "ux_carts_user_kind" ON "carts" ("user_id", "kind")"#,
            r#"CREATE UNIQUE INDEX "ux_orders_subscription_cycle" ON "orders" ("subscription_id", "cycle")"#,
            r#"CREATE UNIQUE INDEX "ux_subscriptions_origin_item" ON "subscriptions" ("origin_order_id", "item_id")"#,
            r#"PRIMARY KEY ("user_id", "idempotency_key")"#,
            r#"PRIMARY KEY ("cart_id", "item_id")"#,
        ] {
            assert!(postgres.contains(line), "{line}\n{postgres}");
        }
    }
}
