//! The payment service's schema, forward-only. It owns payment attempts, charges, refunds and PG subscription keys; their tables arrive with the
//! payments issue, as the first migrations of this list.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
