//! The order service's schema, forward-only. It owns carts, orders, order lines and subscriptions; their tables arrive with the
//! orders issue, as the first migrations of this list.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
