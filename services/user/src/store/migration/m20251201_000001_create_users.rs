//! `users` and `refresh_tokens`.
//!
//! **Uniqueness among active users.** E-mail, display name and phone must be unique among
//! ACTIVE accounts only: a withdrawn account keeps its row (orders point at it) but frees its
//! e-mail for a new sign-up. A partial unique index would say that directly, but MySQL has none.
//! The portable form: `active_email`, `active_display_name` and `active_phone` hold the value
//! while the account is ACTIVE and NULL after withdrawal, each under a plain UNIQUE index. NULLs
//! never collide on any of the three backends, and the database — not a check-then-insert in
//! the service — decides a race between two sign-ups, so two concurrent sign-ups with the same
//! e-mail create exactly one account. The index names (`ux_users_active_…`) are what the store
//! reads back from a unique violation to tell which value was taken.
//!
//! Instants are microseconds: `timestamp with time zone` on PostgreSQL, `DATETIME(6)` on MySQL,
//! RFC 3339 text on SQLite. Indexed strings are `VARCHAR(≤255)` (MySQL cannot index `TEXT`).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    Id,
    Email,
    DisplayName,
    RealName,
    Phone,
    City,
    DetailAddress,
    PasswordHash,
    Social,
    Role,
    Status,
    ActiveEmail,
    ActiveDisplayName,
    ActivePhone,
    CreatedAt,
    UpdatedAt,
    WithdrawnAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum RefreshTokens {
    Table,
    Id,
    TokenHash,
    FamilyId,
    UserId,
    Status,
    ExpiresAt,
    CreatedAt,
}

/// The unique indexes whose names the store maps back to `EMAIL_TAKEN` and friends.
pub const ACTIVE_EMAIL_INDEX: &str = "ux_users_active_email";
pub const ACTIVE_DISPLAY_NAME_INDEX: &str = "ux_users_active_display_name";
pub const ACTIVE_PHONE_INDEX: &str = "ux_users_active_phone";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(users_table(backend)).await?;
        manager.create_table(refresh_tokens_table(backend)).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }
}

fn users_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(Users::Table)
        .col(
            ColumnDef::new(Users::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(ColumnDef::new(Users::Email).string_len(254).not_null())
        .col(ColumnDef::new(Users::DisplayName).string_len(80).not_null())
        .col(ColumnDef::new(Users::RealName).string_len(200).not_null())
        .col(ColumnDef::new(Users::Phone).string_len(13).not_null())
        .col(ColumnDef::new(Users::City).string_len(400).not_null())
        .col(ColumnDef::new(Users::DetailAddress).text().not_null())
        // NULL for accounts created through OAuth, which have no password.
        .col(ColumnDef::new(Users::PasswordHash).string_len(255).null())
        .col(
            ColumnDef::new(Users::Social)
                .boolean()
                .not_null()
                .default(false),
        )
        .col(ColumnDef::new(Users::Role).string_len(8).not_null())
        .col(ColumnDef::new(Users::Status).string_len(16).not_null())
        .col(ColumnDef::new(Users::ActiveEmail).string_len(254).null())
        .col(
            ColumnDef::new(Users::ActiveDisplayName)
                .string_len(80)
                .null(),
        )
        .col(ColumnDef::new(Users::ActivePhone).string_len(13).null())
        .col(instant(backend, Users::CreatedAt).not_null())
        .col(instant(backend, Users::UpdatedAt).not_null())
        .col(instant(backend, Users::WithdrawnAt).null());
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

fn refresh_tokens_table(backend: DbBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table(RefreshTokens::Table)
        .col(
            ColumnDef::new(RefreshTokens::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(RefreshTokens::TokenHash)
                .string_len(64)
                .not_null(),
        )
        .col(
            ColumnDef::new(RefreshTokens::FamilyId)
                .string_len(36)
                .not_null(),
        )
        .col(
            ColumnDef::new(RefreshTokens::UserId)
                .big_integer()
                .not_null(),
        )
        .col(
            ColumnDef::new(RefreshTokens::Status)
                .string_len(16)
                .not_null(),
        )
        .col(instant(backend, RefreshTokens::ExpiresAt).not_null())
        .col(instant(backend, RefreshTokens::CreatedAt).not_null())
        .foreign_key(
            ForeignKey::create()
                .name("fk_refresh_tokens_user")
                .from(RefreshTokens::Table, RefreshTokens::UserId)
                .to(Users::Table, Users::Id)
                .on_delete(ForeignKeyAction::Cascade),
        );
    mysql_table_options(backend, &mut table);
    table.to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    let unique = |name: &str, column: Users| {
        Index::create()
            .name(name)
            .table(Users::Table)
            .col(column)
            .unique()
            .to_owned()
    };
    vec![
        unique(ACTIVE_EMAIL_INDEX, Users::ActiveEmail),
        unique(ACTIVE_DISPLAY_NAME_INDEX, Users::ActiveDisplayName),
        unique(ACTIVE_PHONE_INDEX, Users::ActivePhone),
        Index::create()
            .name("ux_refresh_tokens_hash")
            .table(RefreshTokens::Table)
            .col(RefreshTokens::TokenHash)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_refresh_tokens_family")
            .table(RefreshTokens::Table)
            .col(RefreshTokens::FamilyId)
            .col(RefreshTokens::Status)
            .to_owned(),
        Index::create()
            .name("idx_refresh_tokens_user")
            .table(RefreshTokens::Table)
            .col(RefreshTokens::UserId)
            .col(RefreshTokens::Status)
            .to_owned(),
    ]
}

fn instant<T: IntoIden>(backend: DbBackend, column: T) -> ColumnDef {
    let mut definition = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => definition.custom("DATETIME(6)"),
        _ => definition.timestamp_with_time_zone(),
    };
    definition
}

/// utf8mb4 so Korean fits, and a binary collation so uniqueness compares exactly as on
/// PostgreSQL and SQLite (values are normalised before they are stored).
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

    #[test]
    fn uniqueness_is_by_named_indexes_on_every_backend() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            let statements: Vec<String> = indexes()
                .iter()
                .map(|index| backend.build(index).sql)
                .collect();
            for name in [
                ACTIVE_EMAIL_INDEX,
                ACTIVE_DISPLAY_NAME_INDEX,
                ACTIVE_PHONE_INDEX,
            ] {
                assert!(
                    statements
                        .iter()
                        .any(|sql| sql.starts_with("CREATE UNIQUE INDEX") && sql.contains(name)),
                    "{backend:?}: {statements:#?}"
                );
            }
        }
        let mysql = DbBackend::MySql.build(&users_table(DbBackend::MySql)).sql;
        assert!(
            mysql.contains("`created_at` DATETIME(6) NOT NULL"),
            "{mysql}"
        );
    }
}
