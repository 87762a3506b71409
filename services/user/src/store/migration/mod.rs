//! The user service's schema, forward-only. It owns users, credentials, OAuth identities and refresh-token families; their tables arrive with the
//! identity issue, as the first migrations of this list.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
