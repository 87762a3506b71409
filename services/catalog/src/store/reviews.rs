//! Reviews and the counters they keep on their item (`review_count`, `star_sum`,
//! `star_avg_centi`).
//!
//! Exactness under concurrency: every write of a review changes the item's counters in the same
//! transaction, relatively (`review_count = review_count + 1`, `star_sum = star_sum + Δ`, never a
//! value read earlier and written back), and then recomputes `star_avg_centi` in Rust
//! ([`star_avg_centi`], integer round-half-up) from the sums read back under the item's row lock,
//! which the relative update took and holds until commit. Two reviews of one item therefore
//! queue on that row: each sees the other's committed sums, and the stored mean always matches
//! the stored sums. Computing the mean in Rust keeps it out of SQL, where MySQL's `/` is decimal
//! division and where MySQL, unlike the others, lets a `SET` read columns the same statement
//! already changed.
//!
//! Every transaction starts with a write (the review row), so SQLite takes its write lock
//! before it reads anything (a read first would make a later write fail with
//! `SQLITE_BUSY_SNAPSHOT` under concurrent writers), and the lock order is the same everywhere:
//! the review row, then the item row, so concurrent writes of reviews never deadlock.
//!
//! Edits and deletes of reviews whose item was deleted meanwhile still adjust that item's
//! counters (they are history, never shown); creating one is refused.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, Order, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait,
};

use super::entity::{item, review};
use super::{CatalogStore, StoreError};
use crate::domain::{
    Page, ReviewChanges, ReviewDraft, ReviewListQuery, ReviewSort, star_avg_centi,
};

/// A live review as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewRecord {
    pub review_id: i64,
    pub item_id: i64,
    pub order_id: i64,
    /// The author.
    pub user_id: i64,
    /// The author's display name when the review was written.
    pub display_name: String,
    pub star: i32,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A review to store: the checked body, its item, its author and the author's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReview {
    pub item_id: i64,
    pub user_id: i64,
    pub display_name: String,
    pub draft: ReviewDraft,
}

/// What creating a review led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(ReviewRecord),
    /// A live review of this (order, item) exists: nothing was written.
    AlreadyReviewed,
    /// The item does not exist or was deleted: nothing was written.
    ItemNotFound,
}

/// The item's review counters as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReviewCounters {
    pub review_count: i64,
    pub star_sum: i64,
    pub star_avg_centi: i64,
}

impl CatalogStore {
    /// Whether a live review of `(order_id, item_id)` exists: a cheap early answer before the
    /// other services are asked; the unique index decides races.
    pub async fn purchase_reviewed(&self, order_id: i64, item_id: i64) -> Result<bool, StoreError> {
        let found = review::Entity::find()
            .filter(review::Column::LiveOrderId.eq(order_id))
            .filter(review::Column::ItemId.eq(item_id))
            .count(&self.db)
            .await?;
        Ok(found > 0)
    }

    /// Whether `item_id` is a live item.
    pub async fn item_is_live(&self, item_id: i64) -> Result<bool, StoreError> {
        let found = item::Entity::find_by_id(item_id)
            .filter(item::Column::DeletedAt.is_null())
            .count(&self.db)
            .await?;
        Ok(found > 0)
    }

    /// Stores a review and counts it on its item, in one transaction: the review row (its
    /// unique index refuses a second live review of the purchase), then the relative counter
    /// update, which must hit a live item, then the mean from the new sums.
    pub async fn create_review(
        &self,
        new: &NewReview,
        now: DateTime<Utc>,
    ) -> Result<CreateOutcome, StoreError> {
        // Stored instants keep microseconds on every backend: what is answered equals what a
        // later read gives.
        let now = now.trunc_subsecs(6);
        let transaction = self.db.begin().await?;
        let row = review::ActiveModel {
            id: NotSet,
            item_id: Set(new.item_id),
            order_id: Set(new.draft.order_id),
            user_id: Set(new.user_id),
            display_name: Set(new.display_name.clone()),
            star: Set(new.draft.star),
            content: Set(new.draft.content.clone()),
            live_order_id: Set(Some(new.draft.order_id)),
            deleted_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let inserted = review::Entity::insert(row).exec(&transaction).await;
        let review_id = match inserted {
            Ok(inserted) => inserted.last_insert_id,
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                // Dropping the transaction rolls it back (PostgreSQL has aborted it anyway).
                return Ok(CreateOutcome::AlreadyReviewed);
            }
            Err(error) => return Err(error.into()),
        };
        let counted = item::Entity::update_many()
            .col_expr(
                item::Column::ReviewCount,
                Expr::col(item::Column::ReviewCount).add(1),
            )
            .col_expr(
                item::Column::StarSum,
                Expr::col(item::Column::StarSum).add(i64::from(new.draft.star)),
            )
            .filter(item::Column::Id.eq(new.item_id))
            .filter(item::Column::DeletedAt.is_null())
            .exec(&transaction)
            .await?;
        if counted.rows_affected != 1 {
            // Deleted since the caller checked: the review row goes with the rollback.
            return Ok(CreateOutcome::ItemNotFound);
        }
        refresh_star_avg(&transaction, new.item_id).await?;
        transaction.commit().await?;
        Ok(CreateOutcome::Created(ReviewRecord {
            review_id,
            item_id: new.item_id,
            order_id: new.draft.order_id,
            user_id: new.user_id,
            display_name: new.display_name.clone(),
            star: new.draft.star,
            content: new.draft.content.clone(),
            created_at: now,
            updated_at: now,
        }))
    }

    /// Applies `changes` to a live review of `user_id` and answers it as stored; `None` when it
    /// does not exist, was deleted, or is someone else's. A new star moves the item's sum by the
    /// difference and recomputes the mean; the count does not change.
    pub async fn update_review(
        &self,
        review_id: i64,
        user_id: i64,
        changes: &ReviewChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<ReviewRecord>, StoreError> {
        if changes.is_empty() {
            return Ok(self
                .review(review_id)
                .await?
                .filter(|review| review.user_id == user_id));
        }
        let now = now.trunc_subsecs(6);
        let transaction = self.db.begin().await?;
        // First a write: it locks the row, so the star read next is the one this edit replaces.
        let touched = live_review_of(review::Entity::update_many(), review_id, user_id)
            .col_expr(review::Column::UpdatedAt, Expr::value(now))
            .exec(&transaction)
            .await?;
        if touched.rows_affected != 1 {
            return Ok(None);
        }
        let current = review::Entity::find_by_id(review_id)
            .one(&transaction)
            .await?
            .ok_or(StoreError::Database(sea_orm::DbErr::RecordNotUpdated))?;
        let star = changes.star.unwrap_or(current.star);
        let content = changes
            .content
            .clone()
            .unwrap_or_else(|| current.content.clone());
        review::Entity::update_many()
            .col_expr(review::Column::Star, Expr::value(star))
            .col_expr(review::Column::Content, Expr::value(content.clone()))
            .filter(review::Column::Id.eq(review_id))
            .exec(&transaction)
            .await?;
        let delta = i64::from(star) - i64::from(current.star);
        if delta != 0 {
            item::Entity::update_many()
                .col_expr(
                    item::Column::StarSum,
                    Expr::col(item::Column::StarSum).add(delta),
                )
                .filter(item::Column::Id.eq(current.item_id))
                .exec(&transaction)
                .await?;
            refresh_star_avg(&transaction, current.item_id).await?;
        }
        transaction.commit().await?;
        Ok(Some(ReviewRecord {
            star,
            content,
            updated_at: now,
            ..record(current)
        }))
    }

    /// Soft-deletes a live review of `user_id` and uncounts it from its item; false when it
    /// does not exist, was deleted already, or is someone else's. Deleting frees the purchase's
    /// slot (`live_order_id` becomes NULL): the buyer may review it again.
    pub async fn delete_review(
        &self,
        review_id: i64,
        user_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = now.trunc_subsecs(6);
        let transaction = self.db.begin().await?;
        let deleted = live_review_of(review::Entity::update_many(), review_id, user_id)
            .col_expr(review::Column::DeletedAt, Expr::value(Some(now)))
            .col_expr(
                review::Column::LiveOrderId,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(review::Column::UpdatedAt, Expr::value(now))
            .exec(&transaction)
            .await?;
        if deleted.rows_affected != 1 {
            return Ok(false);
        }
        // Locked by the update above: its star cannot change before the commit.
        let removed = review::Entity::find_by_id(review_id)
            .one(&transaction)
            .await?
            .ok_or(StoreError::Database(sea_orm::DbErr::RecordNotUpdated))?;
        item::Entity::update_many()
            .col_expr(
                item::Column::ReviewCount,
                Expr::col(item::Column::ReviewCount).sub(1),
            )
            .col_expr(
                item::Column::StarSum,
                Expr::col(item::Column::StarSum).sub(i64::from(removed.star)),
            )
            .filter(item::Column::Id.eq(removed.item_id))
            .exec(&transaction)
            .await?;
        refresh_star_avg(&transaction, removed.item_id).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// A live review by id (whether or not its item is still live).
    pub async fn review(&self, review_id: i64) -> Result<Option<ReviewRecord>, StoreError> {
        Ok(review::Entity::find_by_id(review_id)
            .filter(review::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .map(record))
    }

    /// One page of an item's live reviews with their total. The caller checks the item.
    pub async fn item_reviews(
        &self,
        item_id: i64,
        query: &ReviewListQuery,
    ) -> Result<Page<ReviewRecord>, StoreError> {
        self.review_page(review::Column::ItemId, item_id, query)
            .await
    }

    /// One page of an author's live reviews with their total.
    pub async fn user_reviews(
        &self,
        user_id: i64,
        query: &ReviewListQuery,
    ) -> Result<Page<ReviewRecord>, StoreError> {
        self.review_page(review::Column::UserId, user_id, query)
            .await
    }

    /// The review counters of an item, deleted or not; `None` when no such row exists.
    pub async fn review_counters(
        &self,
        item_id: i64,
    ) -> Result<Option<ReviewCounters>, StoreError> {
        let counters: Option<(i64, i64, i64)> = item::Entity::find_by_id(item_id)
            .select_only()
            .column(item::Column::ReviewCount)
            .column(item::Column::StarSum)
            .column(item::Column::StarAvgCenti)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(
            counters.map(|(review_count, star_sum, star_avg_centi)| ReviewCounters {
                review_count,
                star_sum,
                star_avg_centi,
            }),
        )
    }

    /// The count and the page of live reviews with `column = value`, side by side on two
    /// pooled connections.
    async fn review_page(
        &self,
        column: review::Column,
        value: i64,
        query: &ReviewListQuery,
    ) -> Result<Page<ReviewRecord>, StoreError> {
        let live = || {
            review::Entity::find()
                .filter(column.eq(value))
                .filter(review::Column::DeletedAt.is_null())
        };
        let count = async { live().count(&self.db).await.map_err(StoreError::from) };
        let mut rows = live();
        for (key, order) in review_order(query.sort) {
            rows = rows.order_by(key, order);
        }
        let rows = rows
            .limit(query.page.limit())
            .offset(query.page.offset())
            .all(&self.db);
        let rows = async { rows.await.map_err(StoreError::from) };
        let (total_elements, models) = tokio::try_join!(count, rows)?;
        Ok(Page {
            rows: models.into_iter().map(record).collect(),
            page: query.page,
            total_elements,
        })
    }
}

/// `statement` narrowed to the live review `review_id` of `user_id`.
fn live_review_of(
    statement: sea_orm::UpdateMany<review::Entity>,
    review_id: i64,
    user_id: i64,
) -> sea_orm::UpdateMany<review::Entity> {
    statement
        .filter(review::Column::Id.eq(review_id))
        .filter(review::Column::UserId.eq(user_id))
        .filter(review::Column::DeletedAt.is_null())
}

/// Recomputes `star_avg_centi` of an item from its current sums. Called in a transaction that
/// has already changed (and so locked) the item's row; the locking read says so explicitly for
/// MySQL, whose plain reads would use the transaction's snapshot.
async fn refresh_star_avg<C: ConnectionTrait>(db: &C, item_id: i64) -> Result<(), StoreError> {
    let sums: Option<(i64, i64)> = item::Entity::find_by_id(item_id)
        .select_only()
        .column(item::Column::ReviewCount)
        .column(item::Column::StarSum)
        .lock_exclusive()
        .into_tuple()
        .one(db)
        .await?;
    let (review_count, star_sum) =
        sums.ok_or(StoreError::Database(sea_orm::DbErr::RecordNotUpdated))?;
    item::Entity::update_many()
        .col_expr(
            item::Column::StarAvgCenti,
            Expr::value(star_avg_centi(star_sum, review_count)),
        )
        .filter(item::Column::Id.eq(item_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The ORDER BY of a sort: equal keys newest first, then by id (descending), so pages are
/// stable even for reviews written in the same microsecond.
fn review_order(sort: ReviewSort) -> Vec<(review::Column, Order)> {
    let newest = [
        (review::Column::CreatedAt, Order::Desc),
        (review::Column::Id, Order::Desc),
    ];
    match sort {
        ReviewSort::Newest => newest.to_vec(),
        ReviewSort::Oldest => vec![
            (review::Column::CreatedAt, Order::Asc),
            (review::Column::Id, Order::Asc),
        ],
        ReviewSort::StarHigh => [(review::Column::Star, Order::Desc)]
            .into_iter()
            .chain(newest)
            .collect(),
        ReviewSort::StarLow => [(review::Column::Star, Order::Asc)]
            .into_iter()
            .chain(newest)
            .collect(),
    }
}

fn record(model: review::Model) -> ReviewRecord {
    ReviewRecord {
        review_id: model.id,
        item_id: model.item_id,
        order_id: model.order_id,
        user_id: model.user_id,
        display_name: model.display_name,
        star: model.star,
        content: model.content,
        created_at: model.created_at,
        updated_at: model.updated_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sort_ends_in_a_unique_key() {
        for sort in [
            ReviewSort::Newest,
            ReviewSort::Oldest,
            ReviewSort::StarHigh,
            ReviewSort::StarLow,
        ] {
            let order = review_order(sort);
            let (last, _) = order.last().unwrap();
            assert_eq!(format!("{last:?}"), "Id", "{sort:?}");
        }
        let star_low = review_order(ReviewSort::StarLow);
        assert_eq!(format!("{:?}", star_low[0]), "(Star, Asc)");
        assert_eq!(format!("{:?}", star_low[1]), "(CreatedAt, Desc)");
    }
}
