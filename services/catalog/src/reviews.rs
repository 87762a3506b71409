//! `pillivery.catalog.v1.ReviewService`: reviews of items (SPEC section 4, "Reviews").
//!
//! Reading is public; writing needs a verified access token, checked here again (the gateway
//! checks it too, but the service does not trust its network), and the author is always the
//! token's subject, never a field of the request.
//!
//! Creating a review, in order: the body's rules (400, every violation at once), the item
//! (404 `ITEM_NOT_FOUND`), the order service's word that the caller bought the item in that
//! PAID order (422 `NOT_PURCHASED`), no live review of that (order, item) yet (409
//! `ALREADY_REVIEWED`, also decided by the unique index when two requests race), the author's
//! display name from the user service (stored with the review: the name at the time of
//! writing), then one transaction for the row and the item's counters (see
//! `store::reviews`). When the order or user service cannot answer, the call fails with 503
//! (504 on a deadline) before anything is written.
//!
//! Edits and deletes are the author's only: another user's review answers 404
//! `REVIEW_NOT_FOUND`, exactly like a missing one (SPEC section 3: someone else's resource is
//! 404, not 403). A delete is soft and frees the purchase's slot, so its buyer may review it
//! again. Every successful write bumps the list cache's version: `starAvg` and `reviewCount`
//! are list fields and REVIEW_COUNT / STAR_AVG sort on them.

use pillivery_platform::auth::{Caller, TokenVerifier, caller_from_request};
use pillivery_platform::error::Locale;
use pillivery_proto::catalog as pb;
use tonic::{Request, Response, Status};

use crate::cache::ResponseCache;
use crate::clients::ReviewClients;
use crate::domain::{Page, ReviewChanges, ReviewDraft, ReviewListQuery};
use crate::error::CatalogError;
use crate::grpc::timestamp;
use crate::store::{CatalogStore, CreateOutcome, NewReview, ReviewRecord};

type Answer<T> = Result<Response<T>, Status>;

fn failure(locale: Locale) -> impl FnOnce(CatalogError) -> Status {
    move |error| error.into_api_error().into_status(locale)
}

/// The review service over the catalog's store, cache and outgoing edges.
pub struct ReviewGrpc {
    store: CatalogStore,
    cache: ResponseCache,
    verifier: TokenVerifier,
    clients: ReviewClients,
}

impl ReviewGrpc {
    pub fn new(
        store: CatalogStore,
        cache: ResponseCache,
        verifier: TokenVerifier,
        clients: ReviewClients,
    ) -> Self {
        Self {
            store,
            cache,
            verifier,
            clients,
        }
    }

    /// The verified caller and the language to answer in; no or a bad token is 401.
    fn caller<T>(&self, request: &Request<T>) -> Result<(Caller, Locale), Status> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller_from_request(&self.verifier, request)?;
        Ok((caller, locale))
    }

    async fn create(
        &self,
        caller: &Caller,
        request: pb::CreateReviewRequest,
    ) -> Result<ReviewRecord, CatalogError> {
        let draft = ReviewDraft::from_input(request.order_id, request.star, &request.content)?;
        let item_id = request.item_id;
        if !self.store.item_is_live(item_id).await? {
            return Err(CatalogError::ItemNotFound(item_id));
        }
        let purchased = self
            .clients
            .purchased(caller.user_id, draft.order_id, item_id)
            .await?;
        if !purchased {
            return Err(CatalogError::NotPurchased);
        }
        // Early and cheap; the unique index decides a race below.
        if self
            .store
            .purchase_reviewed(draft.order_id, item_id)
            .await?
        {
            return Err(CatalogError::AlreadyReviewed);
        }
        let display_name = self
            .clients
            .display_name(caller.user_id)
            .await?
            .ok_or(CatalogError::InactiveAccount)?;
        let new = NewReview {
            item_id,
            user_id: caller.user_id,
            display_name,
            draft,
        };
        match self.store.create_review(&new, chrono::Utc::now()).await? {
            CreateOutcome::Created(review) => Ok(review),
            CreateOutcome::AlreadyReviewed => Err(CatalogError::AlreadyReviewed),
            CreateOutcome::ItemNotFound => Err(CatalogError::ItemNotFound(item_id)),
        }
    }
}

#[tonic::async_trait]
impl pb::review_service_server::ReviewService for ReviewGrpc {
    async fn create_review(&self, request: Request<pb::CreateReviewRequest>) -> Answer<pb::Review> {
        let (caller, locale) = self.caller(&request)?;
        let review = self
            .create(&caller, request.into_inner())
            .await
            .map_err(failure(locale))?;
        self.cache.invalidate().await;
        tracing::info!(
            review_id = review.review_id,
            item_id = review.item_id,
            user_id = caller.user_id,
            "review created"
        );
        Ok(Response::new(review_message(&review)))
    }

    async fn update_review(&self, request: Request<pb::UpdateReviewRequest>) -> Answer<pb::Review> {
        let (caller, locale) = self.caller(&request)?;
        let request = request.into_inner();
        let review_id = request.review_id;
        let changes = ReviewChanges::from_input(request.star, request.content.as_deref())
            .map_err(|violations| failure(locale)(violations.into()))?;
        let review = self
            .store
            .update_review(review_id, caller.user_id, &changes, chrono::Utc::now())
            .await
            .map_err(|error| failure(locale)(error.into()))?
            .ok_or_else(|| failure(locale)(CatalogError::ReviewNotFound(review_id)))?;
        if !changes.is_empty() {
            self.cache.invalidate().await;
            tracing::info!(review_id, user_id = caller.user_id, "review updated");
        }
        Ok(Response::new(review_message(&review)))
    }

    async fn delete_review(
        &self,
        request: Request<pb::DeleteReviewRequest>,
    ) -> Answer<pb::DeleteReviewResponse> {
        let (caller, locale) = self.caller(&request)?;
        let review_id = request.into_inner().review_id;
        let deleted = self
            .store
            .delete_review(review_id, caller.user_id, chrono::Utc::now())
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        if !deleted {
            return Err(failure(locale)(CatalogError::ReviewNotFound(review_id)));
        }
        self.cache.invalidate().await;
        tracing::info!(review_id, user_id = caller.user_id, "review deleted");
        Ok(Response::new(pb::DeleteReviewResponse {}))
    }

    async fn get_review(&self, request: Request<pb::GetReviewRequest>) -> Answer<pb::Review> {
        let locale = Locale::from_metadata(request.metadata());
        let review_id = request.into_inner().review_id;
        let review = self
            .store
            .review(review_id)
            .await
            .map_err(|error| failure(locale)(error.into()))?
            .ok_or_else(|| failure(locale)(CatalogError::ReviewNotFound(review_id)))?;
        Ok(Response::new(review_message(&review)))
    }

    async fn list_item_reviews(
        &self,
        request: Request<pb::ListItemReviewsRequest>,
    ) -> Answer<pb::ReviewPage> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let query = ReviewListQuery::from_input(request.sort, request.page, request.size)
            .map_err(|violations| failure(locale)(violations.into()))?;
        let live = self
            .store
            .item_is_live(request.item_id)
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        if !live {
            return Err(failure(locale)(CatalogError::ItemNotFound(request.item_id)));
        }
        let page = self
            .store
            .item_reviews(request.item_id, &query)
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        Ok(Response::new(review_page(page)))
    }

    async fn list_my_reviews(
        &self,
        request: Request<pb::ListMyReviewsRequest>,
    ) -> Answer<pb::ReviewPage> {
        let (caller, locale) = self.caller(&request)?;
        let request = request.into_inner();
        let query = ReviewListQuery::from_input(request.sort, request.page, request.size)
            .map_err(|violations| failure(locale)(violations.into()))?;
        let page = self
            .store
            .user_reviews(caller.user_id, &query)
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        Ok(Response::new(review_page(page)))
    }
}

fn review_message(review: &ReviewRecord) -> pb::Review {
    pb::Review {
        review_id: review.review_id,
        item_id: review.item_id,
        order_id: review.order_id,
        user_id: review.user_id,
        display_name: review.display_name.clone(),
        star: review.star,
        content: review.content.clone(),
        created_at: Some(timestamp(review.created_at)),
        updated_at: Some(timestamp(review.updated_at)),
    }
}

fn review_page(page: Page<ReviewRecord>) -> pb::ReviewPage {
    let page_info = page.page_info();
    pb::ReviewPage {
        data: page.rows.iter().map(review_message).collect(),
        page_info: Some(page_info),
    }
}
