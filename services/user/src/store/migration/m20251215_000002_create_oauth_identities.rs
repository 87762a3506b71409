//! `oauth_identities`: which account an OAuth2 login `(provider, subject)` belongs to.
//!
//! One identity links to one account (unique `(provider, subject)`, so two first logins racing
//! cannot link one identity twice); an account may have several identities. Rows go with their
//! account (cascade) and are removed when it is withdrawn, so the same provider account can sign
//! up again later, like a withdrawn e-mail address.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum OauthIdentities {
    Table,
    Id,
    Provider,
    Subject,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    Id,
}

/// The unique index the store recognises in a violation.
pub const IDENTITY_INDEX: &str = "ux_oauth_identities_provider_subject";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager.create_table(table(backend)).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }
}

fn table(backend: DbBackend) -> TableCreateStatement {
    let mut created_at = ColumnDef::new(OauthIdentities::CreatedAt);
    match backend {
        DbBackend::MySql => created_at.custom("DATETIME(6)"),
        _ => created_at.timestamp_with_time_zone(),
    };
    let mut table = Table::create();
    table
        .table(OauthIdentities::Table)
        .col(
            ColumnDef::new(OauthIdentities::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(
            ColumnDef::new(OauthIdentities::Provider)
                .string_len(32)
                .not_null(),
        )
        .col(
            ColumnDef::new(OauthIdentities::Subject)
                .string_len(255)
                .not_null(),
        )
        .col(
            ColumnDef::new(OauthIdentities::UserId)
                .big_integer()
                .not_null(),
        )
        .col(created_at.not_null())
        .foreign_key(
            ForeignKey::create()
                .name("fk_oauth_identities_user")
                .from(OauthIdentities::Table, OauthIdentities::UserId)
                .to(Users::Table, Users::Id)
                .on_delete(ForeignKeyAction::Cascade),
        );
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_bin");
    }
    table.to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name(IDENTITY_INDEX)
            .table(OauthIdentities::Table)
            .col(OauthIdentities::Provider)
            .col(OauthIdentities::Subject)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_oauth_identities_user")
            .table(OauthIdentities::Table)
            .col(OauthIdentities::UserId)
            .to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_unique_on_every_backend() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            let sql = backend.build(&indexes()[0]).sql;
            assert!(
                sql.starts_with("CREATE UNIQUE INDEX") && sql.contains(IDENTITY_INDEX),
                "{backend:?}: {sql}"
            );
        }
    }
}
