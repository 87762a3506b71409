//! The payment service's schema, as forward-only migrations.
//!
//! The service runs [`Migrator`] before it reports ready. A released migration is never
//! edited: a change is a new migration appended to the list. The same migrations run on
//! SQLite, PostgreSQL and MySQL/MariaDB; where the backends differ (the type of a microsecond
//! instant, MySQL's table charset) the migration asks the connection which backend it has.

use sea_orm_migration::prelude::*;

mod m20251128_000001_create_payments;

/// Every migration of the payment service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> =
            vec![Box::new(m20251128_000001_create_payments::Migration)];
        // The platform's inbox and dead letters for the consumer of the order service's
        // events (and its outbox table, unused while the payment service publishes nothing).
        migrations.extend(pillivery_platform::events::migration::migrations());
        migrations
    }
}
