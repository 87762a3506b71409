//! The catalog's outgoing edges, used only to create a review: the order service (did this user
//! buy this item in this PAID order?) and the user service (the author's display name).
//!
//! Built on the platform's [`Upstream`]: a deadline for all attempts, a circuit breaker, a
//! bulkhead, and retries of UNAVAILABLE (both reads have no side effects). When a service cannot
//! answer, the caller gets [`CatalogError::Upstream`], answered as 503 `UPSTREAM_UNAVAILABLE`
//! (504 `UPSTREAM_TIMEOUT` when the deadline passed), and nothing is written. An edge whose
//! target is empty is not configured: every call answers [`CatalogError::UpstreamMissing`]
//! (503) at once. Never called inside a database transaction.

use std::time::Duration;

use pillivery_platform::client::{CallOptions, Upstream, UpstreamConfig};
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_proto::order::CheckPurchaseRequest;
use pillivery_proto::order::order_internal_service_client::OrderInternalServiceClient;
use pillivery_proto::user::GetDisplayNamesRequest;
use pillivery_proto::user::user_internal_service_client::UserInternalServiceClient;

use crate::error::CatalogError;

/// One optional edge: `None` when its target is empty.
#[derive(Clone)]
struct Edge {
    name: &'static str,
    upstream: Option<Upstream>,
    deadline: Duration,
}

impl Edge {
    fn new(
        name: &'static str,
        config: &UpstreamConfig,
        tasks: &Tasks,
        shutdown: &Shutdown,
    ) -> Result<Edge, String> {
        let upstream = if config.target.trim().is_empty() {
            tracing::warn!(
                upstream = name,
                "no target configured: creating a review answers 503 until one is set"
            );
            None
        } else {
            Some(Upstream::new(name, config, tasks, shutdown)?)
        };
        Ok(Edge {
            name,
            upstream,
            deadline: Duration::from_millis(config.policy.default_deadline_ms),
        })
    }

    fn upstream(&self) -> Result<&Upstream, CatalogError> {
        self.upstream
            .as_ref()
            .ok_or(CatalogError::UpstreamMissing(self.name))
    }

    fn options(&self) -> CallOptions {
        CallOptions {
            deadline: self.deadline,
            // Both calls are reads (NO_SIDE_EFFECTS in the contracts).
            retryable: true,
        }
    }

    fn failed(&self) -> impl FnOnce(pillivery_platform::client::CallError) -> CatalogError {
        let upstream = self.name;
        move |error| CatalogError::Upstream { upstream, error }
    }
}

/// `OrderInternalService` and `UserInternalService` behind their resilient edges.
#[derive(Clone)]
pub struct ReviewClients {
    order: Edge,
    user: Edge,
}

impl ReviewClients {
    /// Builds both edges (connections are made lazily, on first use); `dns://` and
    /// `kubernetes:///` targets keep a resolver task in `tasks` until `shutdown`.
    pub fn new(
        order: &UpstreamConfig,
        user: &UpstreamConfig,
        tasks: &Tasks,
        shutdown: &Shutdown,
    ) -> Result<ReviewClients, String> {
        Ok(ReviewClients {
            order: Edge::new("order", order, tasks, shutdown)?,
            user: Edge::new("user", user, tasks, shutdown)?,
        })
    }

    /// Whether `user_id` bought `item_id` in their order `order_id` and that order is PAID.
    pub async fn purchased(
        &self,
        user_id: i64,
        order_id: i64,
        item_id: i64,
    ) -> Result<bool, CatalogError> {
        let answer = self
            .order
            .upstream()?
            .call(self.order.options(), |channel, remaining| async move {
                let mut request = tonic::Request::new(CheckPurchaseRequest {
                    user_id,
                    order_id,
                    item_id,
                });
                request.set_timeout(remaining);
                OrderInternalServiceClient::new(channel)
                    .check_purchase(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
            .map_err(self.order.failed())?;
        Ok(answer.purchased)
    }

    /// The display name of the active account `user_id`; `None` when the user service knows no
    /// such active account (withdrawn since the token was issued).
    pub async fn display_name(&self, user_id: i64) -> Result<Option<String>, CatalogError> {
        let answer = self
            .user
            .upstream()?
            .call(self.user.options(), |channel, remaining| async move {
                let mut request = tonic::Request::new(GetDisplayNamesRequest {
                    user_ids: vec![user_id],
                });
                request.set_timeout(remaining);
                UserInternalServiceClient::new(channel)
                    .get_display_names(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
            .map_err(self.user.failed())?;
        Ok(answer
            .users
            .into_iter()
            .find(|user| user.user_id == user_id)
            .map(|user| user.display_name))
    }
}
