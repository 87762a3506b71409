//! The catalog's schema, as forward-only migrations.
//!
//! The service runs [`Migrator`] before it reports ready (`connect_and_migrate::<Migrator>`).
//! A released migration is never edited: a change is a new migration appended to the list. The
//! same migrations run on SQLite, PostgreSQL and MySQL/MariaDB; where the backends differ (the
//! type of a microsecond timestamp, MySQL's table charset) the migration asks the connection
//! which backend it is talking to.

use sea_orm_migration::prelude::*;

mod m20251124_000001_create_items;
mod m20251125_000001_search_indexes;
mod m20251126_000001_processed_events;
mod m20251127_000001_view_folds;
mod m20251128_000001_reviews;

/// Every migration of the catalog, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![
            Box::new(m20251124_000001_create_items::Migration),
            Box::new(m20251125_000001_search_indexes::Migration),
            Box::new(m20251126_000001_processed_events::Migration),
            Box::new(m20251127_000001_view_folds::Migration),
            Box::new(m20251128_000001_reviews::Migration),
        ];
        // The platform's event tables: the consumer's inbox and dead letters (and an outbox).
        migrations.extend(pillivery_platform::events::migration::migrations());
        migrations
    }
}
