//! SeaORM entities of the order service's tables, as `migration/` creates them.
//!
//! Private to `store`: everything outside sees the records of `store` and the domain types.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

/// `carts`: one row per (user, kind), created on first write.
pub mod cart {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "carts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        pub kind: String,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

/// `cart_lines`: one row per (cart, item).
pub mod cart_line {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cart_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub cart_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: i64,
        pub quantity: i32,
        pub period_days: Option<i32>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

/// `orders`: ordinary and renewal orders.
pub mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        pub status: String,
        pub total_quantity: i64,
        pub total_origin_price: i64,
        pub total_discount_price: i64,
        pub total_price: i64,
        pub receiver_name: String,
        pub receiver_phone: String,
        pub receiver_city: String,
        pub receiver_detail_address: String,
        pub from_cart: bool,
        pub subscription_id: Option<i64>,
        pub cycle: Option<i32>,
        pub payment_id: Option<String>,
        pub paid_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

/// `order_lines`: the snapshot of each line, numbered from 0 in request order.
pub mod order_line {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_no: i32,
        pub item_id: i64,
        pub product_name: String,
        #[sea_orm(column_type = "Text")]
        pub thumbnail: String,
        pub quantity: i32,
        pub period_days: Option<i32>,
        pub origin_price: i64,
        pub discount_price: i64,
        pub real_price: i64,
        pub line_total: i64,
    }

    no_relations!();
}

/// `order_status_history`: every status an order entered, in order.
pub mod order_status_history {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_status_history")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        pub status: String,
        pub at: DateTimeUtc,
    }

    no_relations!();
}

/// `idempotency_keys`: one checkout per (user, key), with the first answer.
pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        pub request_hash: String,
        pub order_id: Option<i64>,
        pub response: Option<Vec<u8>>,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

/// `subscriptions`: one per subscription line of a paid order.
pub mod subscription {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        pub item_id: i64,
        pub product_name: String,
        pub quantity: i32,
        pub period_days: i32,
        pub unit_origin_price: i64,
        pub unit_discount_price: i64,
        pub unit_price: i64,
        pub status: String,
        pub anchor_date: Date,
        pub last_billed_date: Date,
        pub next_billing_date: Date,
        pub cycle: i32,
        pub failed_attempts: i32,
        pub origin_order_id: i64,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}
