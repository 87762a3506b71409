//! The order service's outgoing edge: the catalog, asked for live names and prices (carts) and
//! for the snapshot an order keeps.
//!
//! Built on the platform's [`Upstream`]: a deadline for all attempts, a circuit breaker, a
//! bulkhead, and retries of UNAVAILABLE (the read has no side effects). When the catalog cannot
//! answer, callers get [`OrderError::Catalog`], which the service answers as 503
//! `UPSTREAM_UNAVAILABLE` (504 on a deadline): a cart is never priced with guessed numbers.
//! Never called inside a database transaction.

use std::collections::HashMap;
use std::time::Duration;

use pillivery_platform::client::{CallOptions, Upstream, UpstreamConfig};
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_proto::catalog::BatchGetItemsRequest;
use pillivery_proto::catalog::catalog_internal_service_client::CatalogInternalServiceClient;

use crate::domain::{ItemSnapshot, UnitPrice};
use crate::error::OrderError;

/// The most ids one `BatchGetItems` takes (the catalog's limit).
const BATCH: usize = 100;

/// `CatalogInternalService` behind its resilient edge.
#[derive(Clone)]
pub struct CatalogClient {
    upstream: Upstream,
    deadline: Duration,
}

impl CatalogClient {
    pub fn new(
        config: &UpstreamConfig,
        tasks: &Tasks,
        shutdown: &Shutdown,
    ) -> Result<CatalogClient, String> {
        let upstream = Upstream::new("catalog", config, tasks, shutdown)?;
        Ok(CatalogClient {
            upstream,
            deadline: Duration::from_millis(config.policy.default_deadline_ms),
        })
    }

    /// The live items among `item_ids`, by id; deleted and unknown ids are absent.
    pub async fn items(&self, item_ids: &[i64]) -> Result<HashMap<i64, ItemSnapshot>, OrderError> {
        let mut items = HashMap::with_capacity(item_ids.len());
        for chunk in item_ids.chunks(BATCH) {
            let options = CallOptions {
                deadline: self.deadline,
                retryable: true,
            };
            let answer = self
                .upstream
                .call(options, |channel, remaining| {
                    let item_ids = chunk.to_vec();
                    async move {
                        let mut request = tonic::Request::new(BatchGetItemsRequest { item_ids });
                        request.set_timeout(remaining);
                        CatalogInternalServiceClient::new(channel)
                            .batch_get_items(request)
                            .await
                            .map(tonic::Response::into_inner)
                    }
                })
                .await?;
            for item in answer.items {
                let price = UnitPrice::new(item.origin_price, item.discount_price)
                    .filter(|price| price.real() == item.real_price)
                    .ok_or_else(|| {
                        OrderError::CatalogAnswer(format!(
                            "item {} has prices {}/{}/{}",
                            item.item_id, item.origin_price, item.discount_price, item.real_price
                        ))
                    })?;
                items.insert(
                    item.item_id,
                    ItemSnapshot {
                        item_id: item.item_id,
                        product_name: item.product_name,
                        thumbnail: item.thumbnail,
                        price,
                    },
                );
            }
        }
        Ok(items)
    }
}
