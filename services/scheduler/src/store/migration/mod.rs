//! The scheduler service's schema, forward-only. It owns billing jobs and their attempts; their tables arrive with the
//! scheduler issue, as the first migrations of this list.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
