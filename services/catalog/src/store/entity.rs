//! SeaORM entities of the catalog's tables, as the migrations in `migration/` create them.
//!
//! Private to `store`: everything outside sees `ItemRecord` and the domain types, so a column
//! can change without touching `grpc.rs`.

/// `items`: one row per item, with its stored prices and counters.
pub mod item {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "items")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub product_name: String,
        pub enterprise: String,
        pub thumbnail: String,
        pub description_image: String,
        pub main_function: String,
        pub base_standard: String,
        pub intake: String,
        pub serving_use: String,
        pub preserve_period: String,
        pub distribution_period: String,
        pub statement_number: String,
        pub registered_date: Date,
        pub sungsang: String,
        pub origin_price: i64,
        pub discount_rate_bp: i32,
        pub discount_price: i64,
        pub real_price: i64,
        pub sales: i64,
        pub views: i64,
        pub review_count: i64,
        pub star_sum: i64,
        pub star_avg_centi: i64,
        pub deleted_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub version: i64,
        /// The last business day folded into `views` (NULL: none yet).
        pub views_folded_through: Option<Date>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `item_categories`: the categories of each item, one row per (item, category).
pub mod item_category {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item_categories")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub category: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `processed_events`: the inbox, one row per applied event (SPEC section 8).
pub mod processed_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processed_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `item_view_folds`: one row per (item, business day) whose views are in `items.views`.
pub mod item_view_fold {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item_view_folds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: Date,
        pub views: i64,
        pub folded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `reviews`: one row per review, soft-deleted ones included.
pub mod review {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reviews")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub item_id: i64,
        pub order_id: i64,
        pub user_id: i64,
        /// The author's display name when the review was written.
        pub display_name: String,
        pub star: i32,
        pub content: String,
        /// `order_id` while live, NULL once deleted: the key of "once per (order, item)".
        pub live_order_id: Option<i64>,
        pub deleted_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
