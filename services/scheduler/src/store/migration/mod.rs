//! The scheduler's schema, as forward-only migrations.
//!
//! The service runs [`Migrator`] before it reports ready. A released migration is never
//! edited: a change is a new migration appended to the list. The same migrations run on
//! SQLite, PostgreSQL and MySQL/MariaDB; where the backends differ (a microsecond instant, MySQL's
//! table options) the migration asks the connection which backend it is talking to. The event
//! tables (inbox and dead letters of the `scheduler` consumer group) are the platform's.

use sea_orm_migration::prelude::*;

mod m20251201_000001_create_billing_jobs;

/// Every migration of the scheduler, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all: Vec<Box<dyn MigrationTrait>> =
            vec![Box::new(m20251201_000001_create_billing_jobs::Migration)];
        all.extend(pillivery_platform::events::migration::migrations());
        all
    }
}
