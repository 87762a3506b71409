//! SeaORM entities of the three event tables, private to the events module: services reach them
//! only through `outbox::append`, the consumer and the dead-letter functions, so the meaning of
//! each column (what "published" is, when an inbox row is written) stays in one place. The
//! tables themselves are created by [`super::migration`].

/// `outbox_events`: events written by this service, in commit order of their ids.
pub(crate) mod outbox_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub event_id: String,
        pub stream: String,
        pub event_type: String,
        pub aggregate_id: String,
        pub payload: Vec<u8>,
        pub traceparent: Option<String>,
        pub occurred_at: DateTimeUtc,
        pub published_at: Option<DateTimeUtc>,
        pub attempts: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `inbox_events`: events this service's consumers have applied.
pub(crate) mod inbox_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `dead_letters`: events a consumer gave up on, with the reason.
pub(crate) mod dead_letter {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub consumer: String,
        pub stream: String,
        pub event_id: String,
        pub event_type: String,
        pub aggregate_id: String,
        pub payload: Vec<u8>,
        pub traceparent: Option<String>,
        pub occurred_at: DateTimeUtc,
        #[sea_orm(column_type = "Text")]
        pub reason: String,
        pub attempts: i32,
        pub failed_at: DateTimeUtc,
        pub replayed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
