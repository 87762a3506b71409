//! SeaORM entities of the payment tables, as `migration/` creates them. Private to `store`.

/// `payments`: one row per attempt to pay an order.
pub mod payment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        pub user_id: i64,
        pub contract: String,
        pub partner_order_id: String,
        pub tid: String,
        pub status: String,
        pub amount: i64,
        pub item_name: String,
        pub quantity: i64,
        pub next_redirect_pc_url: String,
        pub next_redirect_mobile_url: String,
        pub next_redirect_app_url: String,
        pub ready_slot: Option<i64>,
        pub pg_token: Option<String>,
        pub aid: Option<String>,
        pub sid: Option<String>,
        pub lease_until_ms: Option<i64>,
        pub refund_maybe_sent: bool,
        pub refunded_amount: i64,
        pub order_confirmed: bool,
        pub failure_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub approved_at: Option<DateTimeUtc>,
        pub canceled_at: Option<DateTimeUtc>,
        pub refunded_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `ready_keys`: the Idempotency-Key of each ready, per user.
pub mod ready_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ready_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        pub order_id: i64,
        pub payment_id: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `charges`: renewal charges, one per (subscription, cycle).
pub mod charge {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "charges")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub subscription_id: i64,
        pub cycle: i32,
        pub partner_order_id: String,
        pub user_id: i64,
        pub origin_order_id: i64,
        pub amount: i64,
        pub item_name: String,
        pub quantity: i64,
        pub state: String,
        pub attempt: i32,
        pub maybe_sent: bool,
        pub lease_owner: Option<String>,
        pub lease_until_ms: Option<i64>,
        pub tid: Option<String>,
        pub aid: Option<String>,
        pub decline_code: Option<String>,
        pub decline_message: Option<String>,
        pub charged_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `subscription_links`: subscription → the order whose PG key it bills.
pub mod subscription_link {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscription_links")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub subscription_id: i64,
        pub origin_order_id: i64,
        pub active: bool,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `subscription_keys`: the SID issued by an order's first payment.
pub mod subscription_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscription_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub origin_order_id: i64,
        pub sid: String,
        pub user_id: i64,
        pub active: bool,
        pub created_at: DateTimeUtc,
        pub inactivated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
