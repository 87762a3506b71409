//! SeaORM entities of the scheduler's tables, as the migrations in `migration/` create them.
//!
//! Private to `store`: everything outside sees [`crate::domain::Job`] and [`super::Attempt`].

/// `billing_jobs`: one row per subscription.
pub mod billing_job {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub subscription_id: i64,
        pub user_id: i64,
        pub item_id: i64,
        pub item_name: String,
        pub quantity: i32,
        pub unit_price: i64,
        pub period_days: i32,
        pub origin_order_id: i64,
        pub status: String,
        pub next_billing_date: Date,
        pub last_billed_date: Option<Date>,
        pub cycle: i32,
        pub failed_attempts: i32,
        pub next_attempt_date: Option<Date>,
        pub state_version: i64,
        /// The claim holding the job (`<replica>#<claim>`), if any.
        pub lease_owner: Option<String>,
        /// When that claim lapses, epoch milliseconds.
        pub lease_until_ms: Option<i64>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `billing_attempts`: every charge attempt and how it ended.
pub mod billing_attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub subscription_id: i64,
        pub cycle: i32,
        pub attempt: i32,
        pub outcome: String,
        pub reason: String,
        pub as_of: Date,
        pub at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
