//! The order service's gRPC surface: contract messages ⇄ use cases, the caller's identity from
//! the bearer token, nothing else.
//!
//! Customer services (`CartService`, `OrderService`, `SubscriptionService`) take the caller's id
//! only from the verified token, never from the message. `OrderInternalService` has no REST
//! binding and checks no token: it is reachable only on the fleet's internal network, and its
//! callers are services (payment, scheduler, catalog).

use pillivery_platform::auth::{TokenVerifier, caller_from_request};
use pillivery_platform::error::{FieldViolation, Locale, Text};
use pillivery_proto::order as pb;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::domain::order::{OrderLineInput, ReceiverInput, payment_item_name};
use crate::domain::{CartView, OrderInput, OrderStatus, Page, PageRequest, SubscriptionStatus};
use crate::error::OrderError;
use crate::service::OrderService;
use crate::store::{OrderRecord, SubscriptionRecord};

type Answer<T> = Result<Response<T>, Status>;

/// What every customer-facing service holds.
#[derive(Clone)]
pub struct Customer {
    service: OrderService,
    verifier: TokenVerifier,
}

impl Customer {
    pub fn new(service: OrderService, verifier: TokenVerifier) -> Self {
        Self { service, verifier }
    }

    /// The verified caller's id and the language to answer in.
    fn caller<T>(&self, request: &Request<T>) -> Result<(i64, Locale), Status> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller_from_request(&self.verifier, request)?;
        Ok((caller.user_id, locale))
    }
}

fn failure(locale: Locale) -> impl Fn(OrderError) -> Status {
    move |error| error.into_status(locale)
}

/// `pillivery.order.v1.CartService`.
pub struct CartGrpc(pub Customer);

#[tonic::async_trait]
impl pb::cart_service_server::CartService for CartGrpc {
    async fn get_cart(&self, request: Request<pb::GetCartRequest>) -> Answer<pb::Cart> {
        let (user_id, locale) = self.0.caller(&request)?;
        let kind = crate::domain::CartKind::parse(&request.get_ref().kind)
            .map_err(|violations| failure(locale)(violations.into()))?;
        let cart = self
            .0
            .service
            .cart(user_id, kind)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(cart_message(&cart)))
    }

    async fn add_cart_line(&self, request: Request<pb::AddCartLineRequest>) -> Answer<pb::Cart> {
        let (user_id, locale) = self.0.caller(&request)?;
        let body = request.into_inner();
        let cart = self
            .0
            .service
            .add_cart_line(
                user_id,
                &body.kind,
                body.item_id,
                body.quantity,
                body.period_days,
            )
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(cart_message(&cart)))
    }

    async fn update_cart_line(
        &self,
        request: Request<pb::UpdateCartLineRequest>,
    ) -> Answer<pb::Cart> {
        let (user_id, locale) = self.0.caller(&request)?;
        let body = request.into_inner();
        let cart = self
            .0
            .service
            .update_cart_line(
                user_id,
                &body.kind,
                body.item_id,
                body.quantity,
                body.period_days,
            )
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(cart_message(&cart)))
    }

    async fn remove_cart_line(
        &self,
        request: Request<pb::RemoveCartLineRequest>,
    ) -> Answer<pb::RemoveCartLineResponse> {
        let (user_id, locale) = self.0.caller(&request)?;
        let body = request.into_inner();
        self.0
            .service
            .remove_cart_line(user_id, &body.kind, body.item_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::RemoveCartLineResponse {}))
    }
}

/// `pillivery.order.v1.OrderService`.
pub struct OrderGrpc(pub Customer);

#[tonic::async_trait]
impl pb::order_service_server::OrderService for OrderGrpc {
    async fn create_order(&self, request: Request<pb::CreateOrderRequest>) -> Answer<pb::Order> {
        let (user_id, locale) = self.0.caller(&request)?;
        // The gateway forwards the `Idempotency-Key` header under this name.
        let key = request
            .metadata()
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let input = order_input(request.into_inner());
        let answer = self
            .0
            .service
            .create_order(user_id, key.as_deref(), &input, |order| {
                order_message(order).encode_to_vec()
            })
            .await
            .map_err(failure(locale))?;
        let order = pb::Order::decode(answer.as_slice()).map_err(|error| {
            failure(locale)(OrderError::CatalogAnswer(format!(
                "a stored checkout answer does not decode: {error}"
            )))
        })?;
        Ok(Response::new(order))
    }

    async fn list_orders(&self, request: Request<pb::ListOrdersRequest>) -> Answer<pb::OrderPage> {
        let (user_id, locale) = self.0.caller(&request)?;
        let body = request.into_inner();
        let mut violations = Vec::new();
        let status = match body.status {
            None => None,
            Some(number) => match status_from_number(number) {
                Some(status) => Some(status),
                None => {
                    violations.push(FieldViolation::new(
                        "status",
                        serde_json::Value::from(number),
                        Text::new(
                            "status는 REQUEST, PAID, CANCELED, REFUND_PENDING, REFUNDED 중 하나여야 합니다.",
                            "status must be one of REQUEST, PAID, CANCELED, REFUND_PENDING, REFUNDED.",
                        ),
                    ));
                    None
                }
            },
        };
        let page = PageRequest::from_input(body.page, body.size);
        let page = match page {
            Ok(page) if violations.is_empty() => page,
            Ok(_) => return Err(failure(locale)(violations.into())),
            Err(more) => {
                violations.extend(more);
                return Err(failure(locale)(violations.into()));
            }
        };
        let orders = self
            .0
            .service
            .list_orders(user_id, status, page)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::OrderPage {
            page_info: Some(Page::page_info(&orders)),
            data: orders.rows.iter().map(order_message).collect(),
        }))
    }

    async fn get_order(&self, request: Request<pb::GetOrderRequest>) -> Answer<pb::Order> {
        let (user_id, locale) = self.0.caller(&request)?;
        let order = self
            .0
            .service
            .order(user_id, request.get_ref().order_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(order_message(&order)))
    }

    async fn cancel_order(&self, request: Request<pb::CancelOrderRequest>) -> Answer<pb::Order> {
        let (user_id, locale) = self.0.caller(&request)?;
        let order = self
            .0
            .service
            .cancel_order(user_id, request.get_ref().order_id)
            .await
            .map_err(failure(locale))?;
        tracing::info!(
            order_id = order.order_id,
            status = order.status.as_str(),
            "order cancelled by its owner"
        );
        Ok(Response::new(order_message(&order)))
    }
}

/// `pillivery.order.v1.SubscriptionService`.
pub struct SubscriptionGrpc(pub Customer);

#[tonic::async_trait]
impl pb::subscription_service_server::SubscriptionService for SubscriptionGrpc {
    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Answer<pb::SubscriptionPage> {
        let (user_id, locale) = self.0.caller(&request)?;
        let body = request.into_inner();
        let page = PageRequest::from_input(body.page, body.size)
            .map_err(|violations| failure(locale)(violations.into()))?;
        let subscriptions = self
            .0
            .service
            .list_subscriptions(user_id, page)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::SubscriptionPage {
            page_info: Some(Page::page_info(&subscriptions)),
            data: subscriptions
                .rows
                .iter()
                .map(subscription_message)
                .collect(),
        }))
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Answer<pb::Subscription> {
        let (user_id, locale) = self.0.caller(&request)?;
        let subscription = self
            .0
            .service
            .subscription(user_id, request.get_ref().subscription_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(subscription_message(&subscription)))
    }

    async fn update_subscription(
        &self,
        request: Request<pb::UpdateSubscriptionRequest>,
    ) -> Answer<pb::Subscription> {
        let (user_id, locale) = self.0.caller(&request)?;
        let body = request.into_inner();
        let subscription = self
            .0
            .service
            .update_subscription(
                user_id,
                body.subscription_id,
                body.period_days,
                body.quantity,
            )
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(subscription_message(&subscription)))
    }

    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Answer<pb::Subscription> {
        let (user_id, locale) = self.0.caller(&request)?;
        let subscription = self
            .0
            .service
            .cancel_subscription(user_id, request.get_ref().subscription_id)
            .await
            .map_err(failure(locale))?;
        tracing::info!(
            subscription_id = subscription.subscription_id,
            "subscription cancelled by its owner"
        );
        Ok(Response::new(subscription_message(&subscription)))
    }
}

/// `pillivery.order.v1.OrderInternalService`: no token (internal network only).
pub struct OrderInternalGrpc(pub OrderService);

#[tonic::async_trait]
impl pb::order_internal_service_server::OrderInternalService for OrderInternalGrpc {
    async fn get_order_for_payment(
        &self,
        request: Request<pb::GetOrderForPaymentRequest>,
    ) -> Answer<pb::OrderForPayment> {
        let locale = Locale::from_metadata(request.metadata());
        let order = self
            .0
            .order_for_payment(request.get_ref().order_id)
            .await
            .map_err(failure(locale))?;
        let names: Vec<&str> = order
            .lines
            .iter()
            .map(|line| line.product_name.as_str())
            .collect();
        Ok(Response::new(pb::OrderForPayment {
            order_id: order.order_id,
            user_id: order.user_id,
            status: status_number(order.status),
            total_price: order.totals.price,
            total_quantity: order.totals.quantity,
            item_name: payment_item_name(&names),
            has_subscription_lines: order.has_subscription_lines(),
        }))
    }

    async fn mark_order_paid(
        &self,
        request: Request<pb::MarkOrderPaidRequest>,
    ) -> Answer<pb::Order> {
        let locale = Locale::from_metadata(request.metadata());
        let body = request.into_inner();
        let order = self
            .0
            .mark_paid(
                body.order_id,
                &body.payment_id,
                body.amount,
                body.paid_at.as_ref().and_then(instant),
            )
            .await
            .map_err(failure(locale))?;
        tracing::info!(order_id = order.order_id, "order paid");
        Ok(Response::new(order_message(&order)))
    }

    async fn mark_order_refunded(
        &self,
        request: Request<pb::MarkOrderRefundedRequest>,
    ) -> Answer<pb::Order> {
        let locale = Locale::from_metadata(request.metadata());
        let order = self
            .0
            .mark_refunded(request.get_ref().order_id)
            .await
            .map_err(failure(locale))?;
        tracing::info!(order_id = order.order_id, "order refunded");
        Ok(Response::new(order_message(&order)))
    }

    async fn get_subscription_for_billing(
        &self,
        request: Request<pb::GetSubscriptionForBillingRequest>,
    ) -> Answer<pb::Subscription> {
        let locale = Locale::from_metadata(request.metadata());
        let subscription = self
            .0
            .subscription_for_billing(request.get_ref().subscription_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(subscription_message(&subscription)))
    }

    async fn record_renewal(
        &self,
        request: Request<pb::RecordRenewalRequest>,
    ) -> Answer<pb::RecordRenewalResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let body = request.into_inner();
        let (subscription, renewal_order_id) = self
            .0
            .record_renewal(
                body.subscription_id,
                body.cycle,
                &body.billed_date,
                body.amount,
                body.charged_at.as_ref().and_then(instant),
            )
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::RecordRenewalResponse {
            subscription: Some(subscription_message(&subscription)),
            renewal_order_id,
        }))
    }

    async fn record_renewal_failure(
        &self,
        request: Request<pb::RecordRenewalFailureRequest>,
    ) -> Answer<pb::Subscription> {
        let locale = Locale::from_metadata(request.metadata());
        let body = request.into_inner();
        let subscription = self
            .0
            .record_renewal_failure(
                body.subscription_id,
                body.cycle,
                body.attempt,
                body.r#final,
                &body.reason,
            )
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(subscription_message(&subscription)))
    }

    async fn check_purchase(
        &self,
        request: Request<pb::CheckPurchaseRequest>,
    ) -> Answer<pb::CheckPurchaseResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let body = request.into_inner();
        let purchased = self
            .0
            .check_purchase(body.user_id, body.order_id, body.item_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::CheckPurchaseResponse { purchased }))
    }
}

fn order_input(request: pb::CreateOrderRequest) -> OrderInput {
    OrderInput {
        lines: request
            .lines
            .into_iter()
            .map(|line| OrderLineInput {
                item_id: line.item_id,
                quantity: line.quantity,
                period_days: line.period_days,
            })
            .collect(),
        from_cart: request.from_cart,
        receiver: request.receiver.map(|receiver| ReceiverInput {
            name: receiver.name,
            phone: receiver.phone,
            city: receiver.city,
            detail_address: receiver.detail_address,
        }),
    }
}

fn timestamp(instant: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_nanos() as i32,
    }
}

fn instant(timestamp: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    chrono::DateTime::from_timestamp(timestamp.seconds, nanos)
}

pub fn status_number(status: OrderStatus) -> i32 {
    let status = match status {
        OrderStatus::Request => pb::OrderStatus::Request,
        OrderStatus::Paid => pb::OrderStatus::Paid,
        OrderStatus::Canceled => pb::OrderStatus::Canceled,
        OrderStatus::RefundPending => pb::OrderStatus::RefundPending,
        OrderStatus::Refunded => pb::OrderStatus::Refunded,
    };
    status as i32
}

fn status_from_number(number: i32) -> Option<OrderStatus> {
    OrderStatus::ALL
        .into_iter()
        .find(|status| status_number(*status) == number)
}

fn subscription_status_number(status: SubscriptionStatus) -> i32 {
    let status = match status {
        SubscriptionStatus::Active => pb::SubscriptionStatus::Active,
        SubscriptionStatus::PastDue => pb::SubscriptionStatus::PastDue,
        SubscriptionStatus::Suspended => pb::SubscriptionStatus::Suspended,
        SubscriptionStatus::Canceled => pb::SubscriptionStatus::Canceled,
    };
    status as i32
}

fn cart_message(cart: &CartView) -> pb::Cart {
    pb::Cart {
        lines: cart
            .lines
            .iter()
            .map(|line| pb::CartLine {
                item_id: line.item_id,
                product_name: line.product_name.clone(),
                thumbnail: line.thumbnail.clone(),
                quantity: line.quantity,
                period_days: line.period_days,
                origin_price: line.price.origin(),
                discount_price: line.price.discount(),
                real_price: line.price.real(),
                line_total: line.line_total,
            })
            .collect(),
        total_quantity: cart.totals.quantity,
        total_origin_price: cart.totals.origin,
        total_discount_price: cart.totals.discount,
        total_price: cart.totals.price,
    }
}

pub fn order_message(order: &OrderRecord) -> pb::Order {
    pb::Order {
        order_id: order.order_id,
        status: status_number(order.status),
        lines: order
            .lines
            .iter()
            .map(|line| pb::OrderLine {
                item_id: line.item_id,
                product_name: line.product_name.clone(),
                thumbnail: line.thumbnail.clone(),
                quantity: line.quantity,
                period_days: line.period_days,
                origin_price: line.price.origin(),
                discount_price: line.price.discount(),
                real_price: line.price.real(),
                line_total: line.line_total,
            })
            .collect(),
        total_quantity: order.totals.quantity,
        total_origin_price: order.totals.origin,
        total_discount_price: order.totals.discount,
        total_price: order.totals.price,
        receiver: Some(pb::Receiver {
            name: order.receiver.name.clone(),
            phone: order.receiver.phone.clone(),
            city: order.receiver.city.clone(),
            detail_address: order.receiver.detail_address.clone(),
        }),
        status_history: order
            .history
            .iter()
            .map(|change| pb::StatusChange {
                status: status_number(change.status),
                at: Some(timestamp(change.at)),
            })
            .collect(),
        subscription_id: order.subscription_id,
        cycle: order.cycle,
        created_at: Some(timestamp(order.created_at)),
        updated_at: Some(timestamp(order.updated_at)),
    }
}

pub fn subscription_message(subscription: &SubscriptionRecord) -> pb::Subscription {
    pb::Subscription {
        subscription_id: subscription.subscription_id,
        item_id: subscription.item_id,
        product_name: subscription.product_name.clone(),
        quantity: subscription.quantity,
        period_days: subscription.period_days,
        unit_price: subscription.unit_price.real(),
        status: subscription_status_number(subscription.status),
        anchor_date: subscription.dates.anchor.to_string(),
        last_billed_date: subscription.dates.last_billed.to_string(),
        next_billing_date: subscription.dates.next_billing.to_string(),
        cycle: subscription.cycle,
        failed_attempts: subscription.failed_attempts,
    }
}
