//! The catalog's storage: items and their categories in one SQL database.
//!
//! Every query of the catalog is here. [`CatalogStore`] takes validated domain values
//! ([`ItemSearch`], [`NewItem`]) and answers [`ItemRecord`]s; the schema belongs to
//! [`migration`]. The same code runs on SQLite, PostgreSQL and MySQL/MariaDB: queries are built
//! with SeaORM's query builder, and anything the backends disagree on is decided in the
//! migrations (column types) or spelled out here (LIKE escaping, case folding).
//!
//! Prices are stored as computed at write time (`discount_price`, `real_price`), so filters and
//! sorts on the real price use an index instead of recomputing the discount per row. Deleted
//! items stay as rows with `deleted_at` set (orders keep pointing at them) and no read of this
//! store ever returns them.
//!
//! Writes are short transactions of their own: an update reads the item under a row lock
//! (`FOR UPDATE` where the backend has it; SQLite serialises writers anyway), changes it and
//! its categories, and guards the `UPDATE` with the version it read, so a price is never
//! recomputed from a stale origin price or rate.
//!
//! Reviews and the item counters they keep exact are in the `reviews` module (its docs say how:
//! one transaction per write, relative counter updates, the mean recomputed under the
//! item's row lock).

mod entity;
mod error;
pub mod migration;
mod reviews;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Order,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::domain::{
    Category, DiscountRate, ItemChanges, ItemSearch, ItemSort, NewItem, Page, Price,
    star_avg_from_centi,
};
use entity::{item, item_category, item_view_fold, processed_event};
use pillivery_platform::error::{FieldViolation, Text};
use sea_orm::SqlErr;

pub use error::StoreError;
pub use migration::Migrator;
pub use reviews::{CreateOutcome, NewReview, ReviewCounters, ReviewRecord};

/// The most ids one [`CatalogStore::get_many`] takes.
pub const MAX_BATCH_ITEMS: usize = 100;

/// The longest event id [`CatalogStore::record_sales`] takes (the inbox key is `VARCHAR(100)`).
pub const MAX_EVENT_ID_CHARS: usize = 100;

/// The largest quantity of one sale line.
pub const MAX_SALE_QUANTITY: i64 = 10_000;

/// How many rows of the main page's lists.
pub const MAIN_PAGE_ROWS: u64 = 9;

/// An insert of at least this many items refreshes the planner's statistics afterwards.
const BULK_INSERT_ITEMS: usize = 1_000;

/// Category rows written per statement: two parameters each, far below every backend's limit
/// on bound parameters (SQLite's is the lowest at 32 766).
const CATEGORY_ROWS_PER_STATEMENT: usize = 1_000;

/// An item as stored, with its categories.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemRecord {
    pub item_id: i64,
    pub product_name: String,
    /// The brand.
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
    pub registered_date: NaiveDate,
    pub sungsang: String,
    /// In display order, never empty for an item written through this store.
    pub categories: Vec<Category>,
    pub origin_price: i64,
    pub discount_rate: DiscountRate,
    pub discount_price: i64,
    pub real_price: i64,
    /// Units sold, all time.
    pub sales: i64,
    /// Views folded into the stored total (the days not folded yet are added by the service
    /// from their sketches, see `crate::views`).
    pub views: i64,
    /// The last business day whose views are in `views`; `None` before the first fold.
    pub views_folded_through: Option<NaiveDate>,
    pub review_count: i64,
    pub star_sum: i64,
    /// Mean star × 100, rounded half-up; what STAR_AVG sorts on.
    pub star_avg_centi: i64,
    /// Always `None` in what the store returns: deleted items are never read.
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Incremented by every change, for optimistic concurrency.
    pub version: i64,
}

impl ItemRecord {
    /// The mean star as clients see it (2 decimals).
    pub fn star_avg(&self) -> f64 {
        star_avg_from_centi(self.star_avg_centi)
    }

    pub fn price(&self) -> Price {
        Price {
            origin: self.origin_price,
            discount: self.discount_price,
            real: self.real_price,
        }
    }
}

/// The two lists of the main page.
#[derive(Clone, Debug, PartialEq)]
pub struct MainPageRecords {
    /// On-sale items, highest rate first, at most 9.
    pub discount_items: Vec<ItemRecord>,
    /// Best sellers, unsold included: exactly min(9, live items).
    pub best_sellers: Vec<ItemRecord>,
}

/// The catalog's tables behind one connection pool.
#[derive(Clone, Debug)]
pub struct CatalogStore {
    db: DatabaseConnection,
}

impl CatalogStore {
    /// A store over an already migrated database (see [`Migrator`]).
    pub fn new(db: DatabaseConnection) -> CatalogStore {
        CatalogStore { db }
    }

    /// The connection pool, for the event consumer's inbox and dead letters.
    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// One page of a search, with the total of all matches.
    ///
    /// The count and the page are two statements run side by side on two pooled connections;
    /// the categories of the page's rows are one more statement.
    pub async fn search(&self, search: &ItemSearch) -> Result<Page<ItemRecord>, StoreError> {
        let condition = search_condition(search);
        let (sort_column, sort_order) = sort_key(search.sort);
        let count = count_matching(&self.db, condition.clone());
        let rows = item::Entity::find()
            .filter(condition)
            .order_by(sort_column, sort_order)
            .order_by(item::Column::Id, Order::Asc)
            .limit(search.page.limit())
            .offset(search.page.offset())
            .all(&self.db);
        let rows = async { rows.await.map_err(StoreError::from) };
        let (total_elements, models) = tokio::try_join!(count, rows)?;
        let rows = self.with_categories(models).await?;
        Ok(Page {
            rows,
            page: search.page,
            total_elements,
        })
    }

    /// A live item by id; `None` when it does not exist or was deleted.
    pub async fn get(&self, item_id: i64) -> Result<Option<ItemRecord>, StoreError> {
        let model = item::Entity::find_by_id(item_id)
            .filter(item::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?;
        let Some(model) = model else {
            return Ok(None);
        };
        Ok(self.with_categories(vec![model]).await?.pop())
    }

    /// The live items among `item_ids`, in the order asked, each once (the first occurrence of
    /// a repeated id decides its place); ids that do not exist or were deleted are left out.
    ///
    /// At most [`MAX_BATCH_ITEMS`] ids, repeats included, else [`StoreError::Invalid`] on
    /// `itemIds`. One query for the items and one for their categories.
    pub async fn get_many(&self, item_ids: &[i64]) -> Result<Vec<ItemRecord>, StoreError> {
        if item_ids.len() > MAX_BATCH_ITEMS {
            return Err(StoreError::Invalid(vec![FieldViolation::new(
                "itemIds",
                serde_json::Value::from(item_ids.len()),
                Text::new(
                    "한 번에 100개 이하의 아이템만 조회할 수 있습니다.",
                    "At most 100 items can be read at once.",
                ),
            )]));
        }
        let mut wanted = Vec::with_capacity(item_ids.len());
        for &item_id in item_ids {
            if !wanted.contains(&item_id) {
                wanted.push(item_id);
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let models = item::Entity::find()
            .filter(item::Column::Id.is_in(wanted.clone()))
            .filter(item::Column::DeletedAt.is_null())
            .all(&self.db)
            .await?;
        let mut by_id: HashMap<i64, ItemRecord> = self
            .with_categories(models)
            .await?
            .into_iter()
            .map(|record| (record.item_id, record))
            .collect();
        Ok(wanted
            .iter()
            .filter_map(|item_id| by_id.remove(item_id))
            .collect())
    }

    /// Adds the sold quantities of one event to the items' `sales`, exactly once per
    /// `event_id` (the inbox of SPEC section 8). True when applied now, false when the event
    /// had been applied before (then nothing changes).
    ///
    /// One transaction: the event id goes into `processed_events` first, and its primary key
    /// is the guard: a redelivery, even one running at the same time, fails on the key
    /// (PostgreSQL and MySQL make the second insert wait for the first transaction, SQLite
    /// serialises writers), rolls back and answers false. Then each item's counter is
    /// incremented in the database (`sales = sales + n`, never a value computed here), in item
    /// id order so two events on the same items cannot deadlock; lines of one item add up.
    /// Unknown and deleted items are skipped: an order may outlive an item.
    ///
    /// The event id must be 1 to 100 characters and each quantity 1 to 10 000, else
    /// [`StoreError::Invalid`] naming every bad field at once (`eventId`,
    /// `lines[i].quantity`).
    pub async fn record_sales(
        &self,
        event_id: &str,
        lines: &[(i64, i64)],
    ) -> Result<bool, StoreError> {
        let mut violations = Vec::new();
        let event_id_chars = event_id.chars().count();
        if event_id_chars == 0 || event_id_chars > MAX_EVENT_ID_CHARS {
            violations.push(FieldViolation::new(
                "eventId",
                serde_json::Value::from(event_id),
                Text::new(
                    "이벤트 ID는 1자 이상 100자 이하여야 합니다.",
                    "The event id must be 1 to 100 characters.",
                ),
            ));
        }
        let mut quantities: BTreeMap<i64, i64> = BTreeMap::new();
        for (index, &(item_id, quantity)) in lines.iter().enumerate() {
            if !(1..=MAX_SALE_QUANTITY).contains(&quantity) {
                violations.push(FieldViolation::new(
                    format!("lines[{index}].quantity"),
                    serde_json::Value::from(quantity),
                    Text::new(
                        "수량은 1 이상 10000 이하여야 합니다.",
                        "The quantity must be between 1 and 10000.",
                    ),
                ));
                continue;
            }
            *quantities.entry(item_id).or_default() += quantity;
        }
        if !violations.is_empty() {
            return Err(StoreError::Invalid(violations));
        }
        let transaction = self.db.begin().await?;
        let inbox_row = processed_event::ActiveModel {
            event_id: Set(event_id.to_owned()),
            processed_at: Set(Utc::now().trunc_subsecs(6)),
        };
        let inserted = processed_event::Entity::insert(inbox_row)
            .exec_without_returning(&transaction)
            .await;
        match inserted {
            Ok(_) => {}
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                // Applied before: dropping the transaction rolls it back (PostgreSQL has
                // aborted it anyway); nothing was written.
                return Ok(false);
            }
            Err(error) => return Err(error.into()),
        }
        for (item_id, quantity) in quantities {
            // A skipped (unknown or deleted) item affects no row; that is not an error.
            item::Entity::update_many()
                .col_expr(
                    item::Column::Sales,
                    Expr::col(item::Column::Sales).add(quantity),
                )
                .filter(item::Column::Id.eq(item_id))
                .filter(item::Column::DeletedAt.is_null())
                .exec(&transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    /// The main page: the biggest discounts and the best sellers, 9 of each at most.
    pub async fn main_page(&self) -> Result<MainPageRecords, StoreError> {
        let discounts = item::Entity::find()
            .filter(item::Column::DeletedAt.is_null())
            .filter(item::Column::DiscountRateBp.gt(0))
            .order_by(item::Column::DiscountRateBp, Order::Desc)
            .order_by(item::Column::Id, Order::Asc)
            .limit(MAIN_PAGE_ROWS)
            .all(&self.db);
        let best_sellers = item::Entity::find()
            .filter(item::Column::DeletedAt.is_null())
            .order_by(item::Column::Sales, Order::Desc)
            .order_by(item::Column::Id, Order::Asc)
            .limit(MAIN_PAGE_ROWS)
            .all(&self.db);
        let (discounts, best_sellers) = tokio::try_join!(discounts, best_sellers)?;
        // One category query for both lists; an item may be in both.
        let split = discounts.len();
        let mut records = self
            .with_categories(discounts.into_iter().chain(best_sellers).collect())
            .await?;
        let best_sellers = records.split_off(split);
        Ok(MainPageRecords {
            discount_items: records,
            best_sellers,
        })
    }

    /// Stores new items and their categories in one transaction; answers their ids in the
    /// order given. All or nothing: an import that fails half-way leaves no item behind.
    ///
    /// Items are inserted one statement each because that is the only portable way to learn
    /// each id in order: MySQL has no `RETURNING`, the order of a multi-row `RETURNING` is not
    /// promised by PostgreSQL, and consecutive auto-increment ids after a multi-row insert are
    /// not guaranteed under MySQL's interleaved lock mode. The statement text is the same for
    /// every row, so each connection prepares it once. Categories need no ids back and go in
    /// multi-row statements.
    pub async fn insert_items(&self, items: &[NewItem]) -> Result<Vec<i64>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let transaction = self.db.begin().await?;
        let mut ids = Vec::with_capacity(items.len());
        let mut category_rows = Vec::with_capacity(CATEGORY_ROWS_PER_STATEMENT);
        for new_item in items {
            // Stored instants keep microseconds on every backend; truncating here makes what
            // is returned later equal to what was written.
            let now = Utc::now().trunc_subsecs(6);
            let id = item::Entity::insert(new_item_model(new_item, now))
                .exec(&transaction)
                .await?
                .last_insert_id;
            ids.push(id);
            category_rows.extend(category_rows_of(id, &new_item.categories));
            if category_rows.len() >= CATEGORY_ROWS_PER_STATEMENT {
                insert_categories(&transaction, std::mem::take(&mut category_rows)).await?;
            }
        }
        insert_categories(&transaction, category_rows).await?;
        transaction.commit().await?;
        if items.len() >= BULK_INSERT_ITEMS
            && let Err(error) = self.refresh_statistics().await
        {
            // Only speed is at stake; the committed insert stands.
            tracing::warn!(%error, "refreshing planner statistics after a bulk insert failed");
        }
        Ok(ids)
    }

    /// Tells the query planner what the tables now hold; [`insert_items`](Self::insert_items)
    /// calls it after a bulk insert.
    ///
    /// Without statistics the planners take a freshly seeded table for a small one: SQLite then
    /// sorts every live item for a page instead of walking the sort's index (40 ms instead of
    /// 0.2 ms for 40 000 items), PostgreSQL hash-joins and sorts, and counts by scanning the
    /// table until autovacuum has built the visibility map.
    pub async fn refresh_statistics(&self) -> Result<(), StoreError> {
        let statement = match self.db.get_database_backend() {
            DbBackend::Sqlite => "ANALYZE items; ANALYZE item_categories;",
            // VACUUM cannot run in a transaction; the pool's connections are in autocommit.
            DbBackend::Postgres => "VACUUM (ANALYZE) items, item_categories",
            DbBackend::MySql => "ANALYZE TABLE items, item_categories",
            #[allow(unreachable_patterns)]
            _ => return Ok(()),
        };
        self.db.execute_unprepared(statement).await?;
        Ok(())
    }

    /// Changes the fields present in `changes` of a live item and answers it as stored;
    /// `None` when the item does not exist or was deleted.
    ///
    /// A change of the origin price or the rate recomputes the stored discount and real price
    /// from the other, current value; categories given replace the old ones. Every change bumps
    /// `updated_at` and `version`; an empty change writes nothing and answers the item as it is.
    pub async fn update_item(
        &self,
        item_id: i64,
        changes: &ItemChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<ItemRecord>, StoreError> {
        if changes.is_empty() {
            return self.get(item_id).await;
        }
        let now = now.trunc_subsecs(6);
        let transaction = self.db.begin().await?;
        let current = item::Entity::find_by_id(item_id)
            .filter(item::Column::DeletedAt.is_null())
            .lock_exclusive()
            .one(&transaction)
            .await?;
        let Some(current) = current else {
            // Dropping the transaction rolls it back; nothing was written.
            return Ok(None);
        };
        let row = changed_model(&current, changes, now)?;
        let updated = item::Entity::update_many()
            .set(row)
            .filter(item::Column::Id.eq(item_id))
            .filter(item::Column::Version.eq(current.version))
            .filter(item::Column::DeletedAt.is_null())
            .exec(&transaction)
            .await?;
        if updated.rows_affected != 1 {
            // Only reachable if the row lock is not held (it always is): refuse rather than
            // overwrite a change this update did not see.
            return Err(StoreError::Database(sea_orm::DbErr::RecordNotUpdated));
        }
        if let Some(categories) = &changes.categories {
            item_category::Entity::delete_many()
                .filter(item_category::Column::ItemId.eq(item_id))
                .exec(&transaction)
                .await?;
            insert_categories(&transaction, category_rows(item_id, categories)).await?;
        }
        let model = item::Entity::find_by_id(item_id)
            .one(&transaction)
            .await?
            .ok_or(StoreError::Database(sea_orm::DbErr::RecordNotUpdated))?;
        let record = with_categories(&transaction, vec![model]).await?.pop();
        transaction.commit().await?;
        Ok(record)
    }

    /// Soft-deletes a live item: it disappears from every read, its row stays for the orders
    /// that point at it. False when the item does not exist or was already deleted.
    pub async fn soft_delete_item(
        &self,
        item_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = now.trunc_subsecs(6);
        // One statement: atomic on its own, so no explicit transaction is needed.
        let deleted = item::Entity::update_many()
            .col_expr(item::Column::DeletedAt, Expr::value(Some(now)))
            .col_expr(item::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                item::Column::Version,
                Expr::col(item::Column::Version).add(1),
            )
            .filter(item::Column::Id.eq(item_id))
            .filter(item::Column::DeletedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected == 1)
    }

    /// Which of `item_ids` already have `day` folded into their stored views.
    pub async fn folded_items(
        &self,
        day: NaiveDate,
        item_ids: &[i64],
    ) -> Result<HashSet<i64>, StoreError> {
        if item_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let folded: Vec<i64> = item_view_fold::Entity::find()
            .select_only()
            .column(item_view_fold::Column::ItemId)
            .filter(item_view_fold::Column::Day.eq(day))
            .filter(item_view_fold::Column::ItemId.is_in(item_ids.iter().copied()))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(folded.into_iter().collect())
    }

    /// Adds each item's views of `day` to its stored total, at most once per (item, day): one
    /// transaction records every (item, day) in `item_view_folds`, increments `items.views` by
    /// the count (in the database, `views = views + n`) and moves `views_folded_through`
    /// forward to `day` (never back).
    ///
    /// All or nothing. False when one of the (item, day) pairs had been folded already (by
    /// another replica racing this one, say): then nothing was written, and the caller folds
    /// the items one by one so the others still get theirs. Deleted items are folded like the
    /// others (their counters are history; they are never shown).
    pub async fn fold_views(
        &self,
        day: NaiveDate,
        counts: &[(i64, i64)],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if counts.is_empty() {
            return Ok(true);
        }
        let now = now.trunc_subsecs(6);
        let transaction = self.db.begin().await?;
        let rows = counts
            .iter()
            .map(|&(item_id, views)| item_view_fold::ActiveModel {
                item_id: Set(item_id),
                day: Set(day),
                views: Set(views),
                folded_at: Set(now),
            });
        let inserted = item_view_fold::Entity::insert_many(rows)
            .exec_without_returning(&transaction)
            .await;
        match inserted {
            Ok(_) => {}
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                // Dropping the transaction rolls it back: no counter was touched.
                return Ok(false);
            }
            Err(error) => return Err(error.into()),
        }
        for &(item_id, views) in counts {
            let later_day = Condition::any()
                .add(item::Column::ViewsFoldedThrough.is_null())
                .add(item::Column::ViewsFoldedThrough.lt(day));
            item::Entity::update_many()
                .col_expr(
                    item::Column::Views,
                    Expr::col(item::Column::Views).add(views),
                )
                .col_expr(
                    item::Column::ViewsFoldedThrough,
                    Expr::case(later_day, Expr::val(day))
                        .finally(Expr::col(item::Column::ViewsFoldedThrough))
                        .into(),
                )
                .filter(item::Column::Id.eq(item_id))
                .exec(&transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    /// Moves `views_folded_through` to `day` for every item still before it: called once
    /// every item with a sketch for `day` has been folded, it says "nothing more of `day`" for
    /// the items nobody viewed that day, so item detail stops reading that day's (absent)
    /// sketch. Neither `views` nor anything a list shows changes.
    pub async fn mark_views_folded_through(&self, day: NaiveDate) -> Result<u64, StoreError> {
        let marked = item::Entity::update_many()
            .col_expr(item::Column::ViewsFoldedThrough, Expr::value(Some(day)))
            .filter(
                Condition::any()
                    .add(item::Column::ViewsFoldedThrough.is_null())
                    .add(item::Column::ViewsFoldedThrough.lt(day)),
            )
            .exec(&self.db)
            .await?;
        Ok(marked.rows_affected)
    }

    /// Live items in the catalog.
    pub async fn count_items(&self) -> Result<u64, StoreError> {
        count_matching(
            &self.db,
            Condition::all().add(item::Column::DeletedAt.is_null()),
        )
        .await
    }

    /// Joins each model with its categories (one query for all) and converts it, keeping order.
    async fn with_categories(
        &self,
        models: Vec<item::Model>,
    ) -> Result<Vec<ItemRecord>, StoreError> {
        with_categories(&self.db, models).await
    }
}

/// Joins each model with its categories (one query for all) and converts it, keeping order.
async fn with_categories<C: ConnectionTrait>(
    db: &C,
    models: Vec<item::Model>,
) -> Result<Vec<ItemRecord>, StoreError> {
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<i64> = models.iter().map(|model| model.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = item_category::Entity::find()
        .filter(item_category::Column::ItemId.is_in(ids))
        .all(db)
        .await?;
    let mut categories: HashMap<i64, Vec<Category>> = HashMap::new();
    for row in rows {
        let category = Category::from_code(&row.category).ok_or_else(|| StoreError::Corrupt {
            item_id: row.item_id,
            column: "item_categories.category",
            value: row.category.clone(),
        })?;
        categories.entry(row.item_id).or_default().push(category);
    }
    models
        .into_iter()
        .map(|model| {
            let mut item_categories = categories.get(&model.id).cloned().unwrap_or_default();
            item_categories.sort();
            record_from_model(model, item_categories)
        })
        .collect()
}

/// The category rows of one item.
fn category_rows_of<'a>(
    item_id: i64,
    categories: &'a [Category],
) -> impl Iterator<Item = item_category::ActiveModel> + 'a {
    categories
        .iter()
        .map(move |category| item_category::ActiveModel {
            item_id: Set(item_id),
            category: Set(category.code().to_owned()),
        })
}

fn category_rows(item_id: i64, categories: &[Category]) -> Vec<item_category::ActiveModel> {
    category_rows_of(item_id, categories).collect()
}

/// The columns an update writes: the fields present, the prices when the origin price or the
/// rate changes (recomputed from `current` for the one not given), `updated_at` and `version`.
fn changed_model(
    current: &item::Model,
    changes: &ItemChanges,
    now: DateTime<Utc>,
) -> Result<item::ActiveModel, StoreError> {
    fn set_if<T: Clone + Into<sea_orm::Value>>(value: &Option<T>) -> sea_orm::ActiveValue<T> {
        match value {
            Some(value) => Set(value.clone()),
            None => NotSet,
        }
    }
    let mut row = item::ActiveModel {
        product_name: set_if(&changes.product_name),
        enterprise: set_if(&changes.enterprise),
        thumbnail: set_if(&changes.thumbnail),
        description_image: set_if(&changes.description_image),
        main_function: set_if(&changes.main_function),
        base_standard: set_if(&changes.base_standard),
        intake: set_if(&changes.intake),
        serving_use: set_if(&changes.serving_use),
        preserve_period: set_if(&changes.preserve_period),
        distribution_period: set_if(&changes.distribution_period),
        statement_number: set_if(&changes.statement_number),
        registered_date: set_if(&changes.registered_date),
        sungsang: set_if(&changes.sungsang),
        updated_at: Set(now),
        version: Set(current.version + 1),
        ..Default::default()
    };
    if changes.changes_price() {
        let rate = match changes.discount_rate {
            Some(rate) => rate,
            None => stored_rate(current)?,
        };
        let price = Price::of(changes.origin_price.unwrap_or(current.origin_price), rate);
        row.origin_price = Set(price.origin);
        row.discount_rate_bp = Set(i32::from(rate.basis_points()));
        row.discount_price = Set(price.discount);
        row.real_price = Set(price.real);
    }
    Ok(row)
}

fn stored_rate(model: &item::Model) -> Result<DiscountRate, StoreError> {
    u16::try_from(model.discount_rate_bp)
        .ok()
        .and_then(DiscountRate::from_basis_points)
        .ok_or_else(|| StoreError::Corrupt {
            item_id: model.id,
            column: "items.discount_rate_bp",
            value: model.discount_rate_bp.to_string(),
        })
}

/// The WHERE clause of a search. Every part is a bound parameter except the LIKE escape
/// character.
fn search_condition(search: &ItemSearch) -> Condition {
    let mut condition = Condition::all().add(item::Column::DeletedAt.is_null());
    if let Some(keyword) = &search.keyword {
        let pattern = contains_pattern(keyword);
        let matches = |column: item::Column| {
            Expr::expr(Func::lower(Expr::col((item::Entity, column))))
                .like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        condition = condition.add(
            Condition::any()
                .add(matches(item::Column::ProductName))
                .add(matches(item::Column::Enterprise)),
        );
    }
    if let Some(category) = search.category {
        condition = condition.add(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(item_category::Entity)
                .and_where(
                    Expr::col((item_category::Entity, item_category::Column::ItemId))
                        .equals((item::Entity, item::Column::Id)),
                )
                .and_where(
                    Expr::col((item_category::Entity, item_category::Column::Category))
                        .eq(category.code()),
                )
                .to_owned(),
        ));
    }
    if let Some(brand) = &search.brand {
        condition = condition.add(item::Column::Enterprise.eq(brand.as_str()));
    }
    let (min_price, max_price) = search.price_range;
    if let Some(min_price) = min_price {
        condition = condition.add(item::Column::RealPrice.gte(min_price));
    }
    if let Some(max_price) = max_price {
        condition = condition.add(item::Column::RealPrice.lte(max_price));
    }
    if search.on_sale {
        condition = condition.add(item::Column::DiscountRateBp.gt(0));
    }
    condition
}

/// `%keyword%` for a case-insensitive substring match with `\`, `%` and `_` taken literally.
///
/// The keyword is lower-cased here and the column with SQL `LOWER()`, so the match ignores
/// case on every backend (MySQL's binary collation, PostgreSQL's `LIKE` and SQLite's
/// case-sensitive `LIKE` under `ESCAPE` alike). SQLite's `LOWER` folds ASCII only; Korean has
/// no case, so only other scripts' capitals are affected there.
fn contains_pattern(keyword: &str) -> String {
    let mut pattern = String::with_capacity(keyword.len() + 8);
    pattern.push('%');
    for character in keyword.to_lowercase().chars() {
        if matches!(character, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

/// The column and direction of a sort; the id tiebreak (ascending) is added by the caller.
fn sort_key(sort: ItemSort) -> (item::Column, Order) {
    let column = match sort {
        ItemSort::Sales => item::Column::Sales,
        ItemSort::Newest => item::Column::CreatedAt,
        ItemSort::PriceHigh | ItemSort::PriceLow => item::Column::RealPrice,
        ItemSort::DiscountRateHigh | ItemSort::DiscountRateLow => item::Column::DiscountRateBp,
        ItemSort::ReviewCount => item::Column::ReviewCount,
        ItemSort::StarAvg => item::Column::StarAvgCenti,
    };
    let order = if sort.is_descending() {
        Order::Desc
    } else {
        Order::Asc
    };
    (column, order)
}

async fn count_matching<C: ConnectionTrait>(
    db: &C,
    condition: Condition,
) -> Result<u64, StoreError> {
    let total: Option<i64> = item::Entity::find()
        .select_only()
        .expr_as(Expr::col((item::Entity, item::Column::Id)).count(), "total")
        .filter(condition)
        .into_tuple()
        .one(db)
        .await?;
    Ok(total.map_or(0, |total| u64::try_from(total).unwrap_or(0)))
}

async fn insert_categories<C: ConnectionTrait>(
    db: &C,
    rows: Vec<item_category::ActiveModel>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    item_category::Entity::insert_many(rows).exec(db).await?;
    Ok(())
}

fn new_item_model(new_item: &NewItem, now: DateTime<Utc>) -> item::ActiveModel {
    let price = new_item.price();
    item::ActiveModel {
        id: NotSet,
        product_name: Set(new_item.product_name.clone()),
        enterprise: Set(new_item.enterprise.clone()),
        thumbnail: Set(new_item.thumbnail.clone()),
        description_image: Set(new_item.description_image.clone()),
        main_function: Set(new_item.main_function.clone()),
        base_standard: Set(new_item.base_standard.clone()),
        intake: Set(new_item.intake.clone()),
        serving_use: Set(new_item.serving_use.clone()),
        preserve_period: Set(new_item.preserve_period.clone()),
        distribution_period: Set(new_item.distribution_period.clone()),
        statement_number: Set(new_item.statement_number.clone()),
        registered_date: Set(new_item.registered_date),
        sungsang: Set(new_item.sungsang.clone()),
        origin_price: Set(price.origin),
        discount_rate_bp: Set(i32::from(new_item.discount_rate.basis_points())),
        discount_price: Set(price.discount),
        real_price: Set(price.real),
        sales: Set(0),
        views: Set(0),
        review_count: Set(0),
        star_sum: Set(0),
        star_avg_centi: Set(0),
        deleted_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        version: Set(1),
        views_folded_through: Set(None),
    }
}

fn record_from_model(
    model: item::Model,
    categories: Vec<Category>,
) -> Result<ItemRecord, StoreError> {
    let discount_rate = stored_rate(&model)?;
    Ok(ItemRecord {
        item_id: model.id,
        product_name: model.product_name,
        enterprise: model.enterprise,
        thumbnail: model.thumbnail,
        description_image: model.description_image,
        main_function: model.main_function,
        base_standard: model.base_standard,
        intake: model.intake,
        serving_use: model.serving_use,
        preserve_period: model.preserve_period,
        distribution_period: model.distribution_period,
        statement_number: model.statement_number,
        registered_date: model.registered_date,
        sungsang: model.sungsang,
        categories,
        origin_price: model.origin_price,
        discount_rate,
        discount_price: model.discount_price,
        real_price: model.real_price,
        sales: model.sales,
        views: model.views,
        views_folded_through: model.views_folded_through,
        review_count: model.review_count,
        star_sum: model.star_sum,
        star_avg_centi: model.star_avg_centi,
        deleted_at: model.deleted_at,
        created_at: model.created_at,
        updated_at: model.updated_at,
        version: model.version,
    })
}

/// What unit tests elsewhere in the crate build records from.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A live item with empty texts, zero counters and no categories.
    pub(crate) fn blank_item() -> ItemRecord {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        ItemRecord {
            item_id: 1,
            product_name: String::new(),
            enterprise: String::new(),
            thumbnail: String::new(),
            description_image: String::new(),
            main_function: String::new(),
            base_standard: String::new(),
            intake: String::new(),
            serving_use: String::new(),
            preserve_period: String::new(),
            distribution_period: String::new(),
            statement_number: String::new(),
            registered_date: epoch.date_naive(),
            sungsang: String::new(),
            categories: Vec::new(),
            origin_price: 0,
            discount_rate: DiscountRate::ZERO,
            discount_price: 0,
            real_price: 0,
            sales: 0,
            views: 0,
            views_folded_through: None,
            review_count: 0,
            star_sum: 0,
            star_avg_centi: 0,
            deleted_at: None,
            created_at: epoch,
            updated_at: epoch,
            version: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_wildcards_and_fold_case() {
        let table = [
            ("루테인", "%루테인%"),
            ("Omega", "%omega%"),
            ("100%", "%100\\%%"),
            ("a_b", "%a\\_b%"),
            ("c:\\x", "%c:\\\\x%"),
            ("%_\\", "%\\%\\_\\\\%"),
        ];
        for (keyword, pattern) in table {
            assert_eq!(contains_pattern(keyword), pattern, "{keyword}");
        }
    }

    #[test]
    fn every_sort_has_its_direction() {
        let table = [
            (ItemSort::Sales, item::Column::Sales, Order::Desc),
            (ItemSort::Newest, item::Column::CreatedAt, Order::Desc),
            (ItemSort::PriceHigh, item::Column::RealPrice, Order::Desc),
            (ItemSort::PriceLow, item::Column::RealPrice, Order::Asc),
            (
                ItemSort::DiscountRateHigh,
                item::Column::DiscountRateBp,
                Order::Desc,
            ),
            (
                ItemSort::DiscountRateLow,
                item::Column::DiscountRateBp,
                Order::Asc,
            ),
            (
                ItemSort::ReviewCount,
                item::Column::ReviewCount,
                Order::Desc,
            ),
            (ItemSort::StarAvg, item::Column::StarAvgCenti, Order::Desc),
        ];
        for (sort, column, order) in table {
            let (got_column, got_order) = sort_key(sort);
            assert_eq!(format!("{got_column:?}"), format!("{column:?}"), "{sort:?}");
            assert_eq!(format!("{got_order:?}"), format!("{order:?}"), "{sort:?}");
        }
    }
}
