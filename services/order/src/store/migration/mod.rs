//! The order service's schema, as forward-only migrations.
//!
//! The service runs [`Migrator`] before it reports ready. A released migration is never
//! edited: a change is a new migration appended to the list. The event tables (outbox, inbox,
//! dead letters) are the platform's migrations, appended after this service's own.

use sea_orm_migration::prelude::*;

mod m20251210_000001_create_orders;

/// Every migration of the order service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all: Vec<Box<dyn MigrationTrait>> =
            vec![Box::new(m20251210_000001_create_orders::Migration)];
        all.extend(pillivery_platform::events::migration::migrations());
        all
    }
}
