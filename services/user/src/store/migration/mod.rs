//! The user service's schema, forward-only: a released migration is never edited, a change is a
//! new migration appended to the list. The same migrations run on SQLite, PostgreSQL and
//! MySQL/MariaDB; where the backends differ the migration asks the connection which one it has.

use sea_orm_migration::prelude::*;

mod m20251201_000001_create_users;
mod m20251215_000002_create_oauth_identities;

pub use m20251215_000002_create_oauth_identities::IDENTITY_INDEX;

/// Every migration of the user service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![
            Box::new(m20251201_000001_create_users::Migration),
            Box::new(m20251215_000002_create_oauth_identities::Migration),
        ];
        // The outbox (and the platform's inbox and dead letters) for `UserWithdrawn`.
        migrations.extend(pillivery_platform::events::migration::migrations());
        migrations
    }
}
