//! The catalog's gRPC surface: contract messages ⇄ domain types, nothing else.
//!
//! Lists and the main page are answered through the [`ResponseCache`]; every successful
//! change an answer depends on (admin writes, recorded sales) makes the cache stale right
//! after it is committed. Item detail counts a view of the client address the gateway
//! forwards (`x-client-ip`), or of the peer address when called directly.

use std::net::IpAddr;

use pillivery_platform::auth::{Caller, Role, TokenVerifier, caller_from_request};
use pillivery_platform::error::Locale;
use pillivery_proto::catalog as pb;
use tonic::{Request, Response, Status};

use crate::cache::{MAIN_PAGE_KEY, ResponseCache, search_key};
use crate::domain::{
    Category, ItemChanges, ItemDraftInput, ItemSearch, NewItem, Page, SearchInput, import_drafts,
};
use crate::error::CatalogError;
use crate::store::{CatalogStore, ItemRecord};
use crate::views::ViewCounter;

/// The metadata the gateway puts the client's address in.
pub const CLIENT_IP_METADATA: &str = "x-client-ip";

/// `pillivery.catalog.v1.CatalogService`: browsing.
pub struct CatalogGrpc {
    store: CatalogStore,
    cache: ResponseCache,
    views: ViewCounter,
}

impl CatalogGrpc {
    pub fn new(store: CatalogStore, cache: ResponseCache, views: ViewCounter) -> Self {
        Self {
            store,
            cache,
            views,
        }
    }
}

/// Who is viewing: the address the gateway forwarded, else the caller's own. Anything that is
/// not an IP address is ignored (it would let one client count as many), and the address is
/// written canonically so one client is one sketch member however it was spelled.
fn visitor<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(CLIENT_IP_METADATA)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<IpAddr>().ok())
        .or_else(|| request.remote_addr().map(|address| address.ip()))
        .map(|ip| ip.to_canonical().to_string())
        // In-process calls have no address at all: they count as one visitor.
        .unwrap_or_else(|| "unknown".to_owned())
}

type Answer<T> = Result<Response<T>, Status>;

fn failure(locale: Locale) -> impl FnOnce(CatalogError) -> Status {
    move |error| error.into_api_error().into_status(locale)
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogGrpc {
    async fn list_categories(
        &self,
        _request: Request<pb::ListCategoriesRequest>,
    ) -> Answer<pb::ListCategoriesResponse> {
        let data = Category::ALL
            .iter()
            .map(|category| pb::CategoryInfo {
                code: category.number(),
                label: category.label_ko().to_owned(),
            })
            .collect();
        Ok(Response::new(pb::ListCategoriesResponse { data }))
    }

    async fn search_items(&self, request: Request<pb::SearchItemsRequest>) -> Answer<pb::ItemPage> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let search = ItemSearch::from_input(SearchInput {
            keyword: request.keyword,
            category: request.category,
            category_name: request.category_name,
            brand: request.brand,
            min_price: request.min_price,
            max_price: request.max_price,
            on_sale: request.on_sale,
            listing: request.listing,
            sort: request.sort,
            page: request.page,
            size: request.size,
        })
        .map_err(|violations| failure(locale)(violations.into()))?;
        let store = &self.store;
        let page = self
            .cache
            .get_or_load_message(&search_key(&search), || async {
                Ok(item_page(store.search(&search).await?))
            })
            .await
            .map_err(|error| failure(locale)(CatalogError::SharedStorage(error)))?;
        Ok(Response::new(page))
    }

    async fn get_main_page(
        &self,
        request: Request<pb::GetMainPageRequest>,
    ) -> Answer<pb::MainPage> {
        let locale = Locale::from_metadata(request.metadata());
        let store = &self.store;
        let main = self
            .cache
            .get_or_load_message(MAIN_PAGE_KEY, || async {
                let main = store.main_page().await?;
                Ok(pb::MainPage {
                    discount_items: main.discount_items.iter().map(item_summary).collect(),
                    best_sellers: main.best_sellers.iter().map(item_summary).collect(),
                })
            })
            .await
            .map_err(|error| failure(locale)(CatalogError::SharedStorage(error)))?;
        Ok(Response::new(main))
    }

    async fn get_item(&self, request: Request<pb::GetItemRequest>) -> Answer<pb::Item> {
        let locale = Locale::from_metadata(request.metadata());
        let visitor = visitor(&request);
        let item_id = request.into_inner().item_id;
        let item = self
            .store
            .get(item_id)
            .await
            .map_err(|error| failure(locale)(error.into()))?
            .ok_or_else(|| failure(locale)(CatalogError::ItemNotFound(item_id)))?;
        // Only items that exist are counted: unknown ids must not grow the store.
        let views = self.views.record(&item, &visitor).await;
        let mut detail = item_detail(&item);
        detail.views = views;
        Ok(Response::new(detail))
    }
}

/// `pillivery.catalog.v1.CatalogAdminService`: item management, for admins only.
///
/// Every call checks the forwarded bearer token itself (the gateway checks it too, but the
/// service must not trust its network): no or a bad token is 401, a token without the ADMIN
/// role 403.
pub struct CatalogAdminGrpc {
    store: CatalogStore,
    cache: ResponseCache,
    verifier: TokenVerifier,
}

impl CatalogAdminGrpc {
    pub fn new(store: CatalogStore, cache: ResponseCache, verifier: TokenVerifier) -> Self {
        Self {
            store,
            cache,
            verifier,
        }
    }

    /// The verified admin behind `request`, and the language to answer in.
    fn admin<T>(&self, request: &Request<T>) -> Result<(Caller, Locale), Status> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller_from_request(&self.verifier, request)?;
        if caller.role != Role::Admin {
            return Err(failure(locale)(CatalogError::Forbidden));
        }
        Ok((caller, locale))
    }
}

#[tonic::async_trait]
impl pb::catalog_admin_service_server::CatalogAdminService for CatalogAdminGrpc {
    async fn create_item(&self, request: Request<pb::CreateItemRequest>) -> Answer<pb::Item> {
        let (caller, locale) = self.admin(&request)?;
        let draft = draft_input(request.into_inner().item.unwrap_or_default());
        let new_item = NewItem::from_draft(&draft, "")
            .map_err(|violations| failure(locale)(violations.into()))?;
        let ids = self
            .store
            .insert_items(std::slice::from_ref(&new_item))
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        self.cache.invalidate().await;
        let item_id = ids.first().copied().unwrap_or_default();
        let item = self
            .store
            .get(item_id)
            .await
            .map_err(|error| failure(locale)(error.into()))?
            .ok_or_else(|| failure(locale)(CatalogError::ItemNotFound(item_id)))?;
        tracing::info!(item_id, admin = caller.user_id, "item created");
        Ok(Response::new(item_detail(&item)))
    }

    async fn update_item(&self, request: Request<pb::UpdateItemRequest>) -> Answer<pb::Item> {
        let (caller, locale) = self.admin(&request)?;
        let request = request.into_inner();
        let item_id = request.item_id;
        let draft = draft_input(request.item.unwrap_or_default());
        let changes = ItemChanges::from_draft(&draft, "")
            .map_err(|violations| failure(locale)(violations.into()))?;
        let item = self
            .store
            .update_item(item_id, &changes, chrono::Utc::now())
            .await
            .map_err(|error| failure(locale)(error.into()))?
            .ok_or_else(|| failure(locale)(CatalogError::ItemNotFound(item_id)))?;
        self.cache.invalidate().await;
        tracing::info!(item_id, admin = caller.user_id, "item updated");
        Ok(Response::new(item_detail(&item)))
    }

    async fn delete_item(
        &self,
        request: Request<pb::DeleteItemRequest>,
    ) -> Answer<pb::DeleteItemResponse> {
        let (caller, locale) = self.admin(&request)?;
        let item_id = request.into_inner().item_id;
        let deleted = self
            .store
            .soft_delete_item(item_id, chrono::Utc::now())
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        if !deleted {
            return Err(failure(locale)(CatalogError::ItemNotFound(item_id)));
        }
        self.cache.invalidate().await;
        tracing::info!(item_id, admin = caller.user_id, "item deleted");
        Ok(Response::new(pb::DeleteItemResponse {}))
    }

    async fn import_items(
        &self,
        request: Request<pb::ImportItemsRequest>,
    ) -> Answer<pb::ImportItemsResponse> {
        let (caller, locale) = self.admin(&request)?;
        let drafts: Vec<ItemDraftInput> = request
            .into_inner()
            .items
            .into_iter()
            .map(draft_input)
            .collect();
        let items =
            import_drafts(&drafts).map_err(|violations| failure(locale)(violations.into()))?;
        let item_ids = self
            .store
            .insert_items(&items)
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        self.cache.invalidate().await;
        tracing::info!(
            items = item_ids.len(),
            admin = caller.user_id,
            "items imported"
        );
        Ok(Response::new(pb::ImportItemsResponse { item_ids }))
    }
}

/// `pillivery.catalog.v1.CatalogInternalService`: what the other services of the fleet ask
/// the catalog (live prices for carts and order snapshots, sales of paid orders and renewals).
///
/// No token is checked: this service is only reachable on the fleet's internal network. It has
/// no REST binding, so the gateway never exposes it, and callers are services, not users.
pub struct CatalogInternalGrpc {
    store: CatalogStore,
    cache: ResponseCache,
}

impl CatalogInternalGrpc {
    pub fn new(store: CatalogStore, cache: ResponseCache) -> Self {
        Self { store, cache }
    }
}

#[tonic::async_trait]
impl pb::catalog_internal_service_server::CatalogInternalService for CatalogInternalGrpc {
    async fn batch_get_items(
        &self,
        request: Request<pb::BatchGetItemsRequest>,
    ) -> Answer<pb::BatchGetItemsResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let item_ids = request.into_inner().item_ids;
        let items = self
            .store
            .get_many(&item_ids)
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        Ok(Response::new(pb::BatchGetItemsResponse {
            items: items.iter().map(item_detail).collect(),
        }))
    }

    async fn record_sales(
        &self,
        request: Request<pb::RecordSalesRequest>,
    ) -> Answer<pb::RecordSalesResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let lines: Vec<(i64, i64)> = request
            .lines
            .iter()
            .map(|line| (line.item_id, line.quantity))
            .collect();
        let applied = self
            .store
            .record_sales(&request.event_id, &lines)
            .await
            .map_err(|error| failure(locale)(error.into()))?;
        if applied {
            // Sales order the SALES sort and the best sellers, and lists show them.
            self.cache.invalidate().await;
            tracing::info!(event_id = %request.event_id, lines = lines.len(), "sales recorded");
        } else {
            tracing::debug!(event_id = %request.event_id, "sales already recorded");
        }
        Ok(Response::new(pb::RecordSalesResponse { applied }))
    }
}

/// The contract's `ItemDraft` as the domain reads it; no rule is applied here.
fn draft_input(draft: pb::ItemDraft) -> ItemDraftInput {
    ItemDraftInput {
        product_name: draft.product_name,
        enterprise: draft.enterprise,
        thumbnail: draft.thumbnail,
        description_image: draft.description_image,
        main_function: draft.main_function,
        base_standard: draft.base_standard,
        intake: draft.intake,
        serving_use: draft.serving_use,
        preserve_period: draft.preserve_period,
        distribution_period: draft.distribution_period,
        statement_number: draft.statement_number,
        registered_date: draft.registered_date,
        sungsang: draft.sungsang,
        categories: draft.categories,
        origin_price: draft.origin_price,
        discount_rate: draft.discount_rate,
    }
}

pub(crate) fn timestamp(instant: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_nanos() as i32,
    }
}

fn category_numbers(categories: &[Category]) -> Vec<i32> {
    categories
        .iter()
        .map(|category| category.number())
        .collect()
}

fn item_page(page: Page<ItemRecord>) -> pb::ItemPage {
    let page_info = page.page_info();
    pb::ItemPage {
        data: page.rows.iter().map(item_summary).collect(),
        page_info: Some(page_info),
    }
}

fn item_summary(item: &ItemRecord) -> pb::ItemSummary {
    pb::ItemSummary {
        item_id: item.item_id,
        product_name: item.product_name.clone(),
        enterprise: item.enterprise.clone(),
        thumbnail: item.thumbnail.clone(),
        categories: category_numbers(&item.categories),
        origin_price: item.origin_price,
        discount_rate: item.discount_rate.as_fraction(),
        discount_price: item.discount_price,
        real_price: item.real_price,
        sales: item.sales,
        star_avg: crate::domain::item::star_avg_from_centi(item.star_avg_centi),
        review_count: item.review_count,
        created_at: Some(timestamp(item.created_at)),
    }
}

fn item_detail(item: &ItemRecord) -> pb::Item {
    pb::Item {
        item_id: item.item_id,
        product_name: item.product_name.clone(),
        enterprise: item.enterprise.clone(),
        thumbnail: item.thumbnail.clone(),
        description_image: item.description_image.clone(),
        main_function: item.main_function.clone(),
        base_standard: item.base_standard.clone(),
        intake: item.intake.clone(),
        serving_use: item.serving_use.clone(),
        preserve_period: item.preserve_period.clone(),
        distribution_period: item.distribution_period.clone(),
        statement_number: item.statement_number.clone(),
        registered_date: item.registered_date.format("%Y-%m-%d").to_string(),
        sungsang: item.sungsang.clone(),
        categories: category_numbers(&item.categories),
        origin_price: item.origin_price,
        discount_rate: item.discount_rate.as_fraction(),
        discount_price: item.discount_price,
        real_price: item.real_price,
        sales: item.sales,
        views: item.views,
        star_avg: crate::domain::item::star_avg_from_centi(item.star_avg_centi),
        review_count: item.review_count,
        created_at: Some(timestamp(item.created_at)),
        updated_at: Some(timestamp(item.updated_at)),
    }
}
