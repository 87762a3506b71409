//! The order service through its gRPC API, on every configured database backend: carts,
//! checkout with idempotency keys, the order state machine, payment and refund, subscriptions
//! and renewals, the unpaid-order sweep (moved by a manual clock), and the outbox events each
//! change writes.

#[macro_use]
mod common;

use chrono::{Duration, Utc};
use common::*;
use pillivery_platform::events::{EventEnvelope, EventHandler, InboxScope};
use pillivery_platform::time::BusinessCalendar;
use pillivery_proto::events as events_pb;
use pillivery_proto::order as pb;
use pillivery_testkit::{Backend, eventually};
use prost::Message;
use tonic::Code;

async fn run<F>(backend: Option<Backend>, scenario: F)
where
    F: AsyncFnOnce(&mut RunningOrder),
{
    let Some(backend) = backend else { return };
    let mut app = RunningOrder::start(&backend).await;
    scenario(&mut app).await;
    app.stop().await;
}

on_every_backend!(
    carts_follow_the_rules_and_price_live,
    concurrent_adds_of_one_item_sum_up,
    a_catalog_outage_is_an_honest_503,
    checkout_is_idempotent,
    concurrent_checkouts_with_one_key_make_one_order,
    checkout_reports_every_violation,
    orders_belong_to_their_owner,
    every_illegal_transition_is_refused,
    paying_cleans_the_cart_and_starts_subscriptions,
    subscriptions_change_and_cancel,
    renewals_are_recorded_once_per_cycle,
    a_withdrawn_users_subscriptions_are_cancelled,
    the_relay_delivers_the_outbox,
);

fn add(
    kind: &str,
    item_id: i64,
    quantity: i32,
    period_days: Option<i32>,
) -> pb::AddCartLineRequest {
    pb::AddCartLineRequest {
        kind: kind.into(),
        item_id,
        quantity,
        period_days,
    }
}

async fn carts_follow_the_rules_and_price_live(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 20_000, 2_000);
    app.catalog.put(2, "오메가3", 35_000, 0);
    let token = app.token(7);
    let mut carts = app.carts();

    // A cart that was never used is empty.
    let empty = carts
        .get_cart(authorized(
            pb::GetCartRequest {
                kind: "normal".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty, pb::Cart::default());

    carts
        .add_cart_line(authorized(add("normal", 1, 2, None), &token))
        .await
        .unwrap();
    let cart = carts
        .add_cart_line(authorized(add("normal", 1, 1, None), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cart.lines.len(),
        1,
        "adding an item already there adds its quantity"
    );
    assert_eq!(cart.lines[0].quantity, 3);
    let cart = carts
        .add_cart_line(authorized(add("normal", 2, 1, None), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            cart.total_quantity,
            cart.total_origin_price,
            cart.total_discount_price,
            cart.total_price
        ),
        (4, 95_000, 6_000, 89_000),
        "the discount is subtracted once"
    );
    assert_eq!(cart.lines[0].line_total, 54_000);
    assert_eq!(cart.lines[0].real_price, 18_000);
    assert_eq!(cart.lines[0].period_days, None);

    // Live prices: the catalog changes, the cart follows.
    app.catalog.put(2, "오메가3", 30_000, 3_000);
    let cart = carts
        .get_cart(authorized(
            pb::GetCartRequest {
                kind: "normal".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cart.total_price, 54_000 + 27_000);

    // Limits and kinds.
    let too_many = carts
        .add_cart_line(authorized(add("normal", 1, 97, None), &token))
        .await
        .unwrap_err();
    let error = assert_error(too_many, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(fields(&error), ["quantity"]);
    let error = assert_error(
        carts
            .add_cart_line(authorized(add("normal", 1, 100, Some(30)), &token))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(fields(&error), ["quantity", "periodDays"]);
    let error = assert_error(
        carts
            .add_cart_line(authorized(add("subscription", 1, 1, None), &token))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(fields(&error), ["periodDays"]);
    let error = assert_error(
        carts
            .get_cart(authorized(
                pb::GetCartRequest {
                    kind: "weekly".into(),
                },
                &token,
            ))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(fields(&error), ["kind"]);
    assert_error(
        carts
            .add_cart_line(authorized(add("normal", 999, 1, None), &token))
            .await
            .unwrap_err(),
        Code::NotFound,
        "ITEM_NOT_FOUND",
    );

    // The subscription cart is separate and keeps periods.
    let subscription = carts
        .add_cart_line(authorized(add("subscription", 1, 1, Some(30)), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(subscription.lines[0].period_days, Some(30));
    let subscription = carts
        .update_cart_line(authorized(
            pb::UpdateCartLineRequest {
                kind: "subscription".into(),
                item_id: 1,
                quantity: Some(2),
                period_days: Some(60),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            subscription.lines[0].quantity,
            subscription.lines[0].period_days
        ),
        (2, Some(60))
    );

    // Changing or removing a line that is not there.
    assert_error(
        carts
            .update_cart_line(authorized(
                pb::UpdateCartLineRequest {
                    kind: "subscription".into(),
                    item_id: 2,
                    quantity: Some(1),
                    period_days: None,
                },
                &token,
            ))
            .await
            .unwrap_err(),
        Code::NotFound,
        "CART_LINE_NOT_FOUND",
    );
    carts
        .remove_cart_line(authorized(
            pb::RemoveCartLineRequest {
                kind: "normal".into(),
                item_id: 2,
            },
            &token,
        ))
        .await
        .unwrap();
    assert_error(
        carts
            .remove_cart_line(authorized(
                pb::RemoveCartLineRequest {
                    kind: "normal".into(),
                    item_id: 2,
                },
                &token,
            ))
            .await
            .unwrap_err(),
        Code::NotFound,
        "CART_LINE_NOT_FOUND",
    );
    // Another user's cart is another cart.
    let other = carts
        .get_cart(authorized(
            pb::GetCartRequest {
                kind: "normal".into(),
            },
            &app.token(8),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(other.lines.is_empty());

    // At most 50 lines.
    for item_id in 100..149 {
        app.catalog.put(item_id, "x", 1_000, 0);
        carts
            .add_cart_line(authorized(add("normal", item_id, 1, None), &token))
            .await
            .unwrap();
    }
    app.catalog.put(149, "x", 1_000, 0);
    assert_error(
        carts
            .add_cart_line(authorized(add("normal", 149, 1, None), &token))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "CART_FULL",
    );
    // A deleted item leaves the view and its totals.
    app.catalog.remove(100);
    let cart = carts
        .get_cart(authorized(
            pb::GetCartRequest {
                kind: "normal".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cart.lines.len(), 49);
    assert_eq!(cart.total_price, 54_000 + 48 * 1_000);
}

async fn concurrent_adds_of_one_item_sum_up(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 10_000, 0);
    let token = app.token(7);
    // Ten concurrent first uses of the cart, all adding the same item.
    let adds = (0..10).map(|_| {
        let mut carts = app.carts();
        let token = token.clone();
        async move {
            carts
                .add_cart_line(authorized(add("normal", 1, 3, None), &token))
                .await
                .map(|_| ())
        }
    });
    for outcome in futures::future::join_all(adds).await {
        outcome.unwrap();
    }
    let cart = app
        .carts()
        .get_cart(authorized(
            pb::GetCartRequest {
                kind: "normal".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cart.lines.len(), 1);
    assert_eq!(cart.lines[0].quantity, 30);
}

async fn a_catalog_outage_is_an_honest_503(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 10_000, 0);
    let token = app.token(7);
    app.carts()
        .add_cart_line(authorized(add("normal", 1, 1, None), &token))
        .await
        .unwrap();
    app.stop_catalog().await;
    let status = app
        .carts()
        .get_cart(authorized(
            pb::GetCartRequest {
                kind: "normal".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_error(status, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    let status = app
        .orders()
        .create_order(keyed(
            order_request(vec![line(1, 1, None)], false),
            &token,
            "k1",
        ))
        .await
        .unwrap_err();
    assert_error(status, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
}

async fn checkout_is_idempotent(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 20_000, 2_000);
    app.catalog.put(2, "오메가3", 35_000, 0);
    let token = app.token(7);
    let mut orders = app.orders();
    let request = order_request(vec![line(1, 2, None), line(2, 1, Some(30))], false);
    let first = orders
        .create_order(keyed(request.clone(), &token, "key-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.status, pb::OrderStatus::Request as i32);
    assert_eq!(first.total_price, 36_000 + 35_000);
    assert_eq!(first.lines[1].period_days, Some(30));
    assert_eq!(first.receiver.as_ref().unwrap().phone, "010-1234-5678");
    assert_eq!(first.status_history.len(), 1);
    assert_eq!(first.subscription_id, None);
    // The snapshot keeps the price of the moment.
    app.catalog.put(1, "루테인", 25_000, 0);
    let replay = orders
        .create_order(keyed(request.clone(), &token, "key-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, first, "a replay answers the first response");
    let mut other_body = request.clone();
    other_body.lines[0].quantity = 3;
    assert_error(
        orders
            .create_order(keyed(other_body, &token, "key-1"))
            .await
            .unwrap_err(),
        Code::AlreadyExists,
        "IDEMPOTENCY_KEY_REUSED",
    );
    // Keys are per user: another user's "key-1" is a new order.
    let theirs = orders
        .create_order(keyed(request.clone(), &app.token(8), "key-1"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(theirs.order_id, first.order_id);
    assert_eq!(theirs.total_price, 50_000 + 35_000, "a new snapshot");
    // No key, no order.
    let error = assert_error(
        orders
            .create_order(authorized(request, &token))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(fields(&error), ["Idempotency-Key"]);
    let page = orders
        .list_orders(authorized(pb::ListOrdersRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.page_info.unwrap().total_elements, 1);
}

async fn concurrent_checkouts_with_one_key_make_one_order(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 20_000, 2_000);
    let token = app.token(7);
    let request = order_request(vec![line(1, 2, None)], false);
    let attempts = (0..8).map(|_| {
        let mut orders = app.orders();
        let request = request.clone();
        let token = token.clone();
        async move {
            orders
                .create_order(keyed(request, &token, "same-key"))
                .await
                .map(|answer| answer.into_inner().order_id)
        }
    });
    let ids: Vec<i64> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|outcome| outcome.expect("every duplicate answers the one order"))
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let page = app
        .orders()
        .list_orders(authorized(pb::ListOrdersRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.page_info.unwrap().total_elements, 1);
}

async fn checkout_reports_every_violation(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 20_000, 0);
    let token = app.token(7);
    let mut orders = app.orders();
    let request = pb::CreateOrderRequest {
        lines: vec![line(1, 0, None), line(1, 100, Some(20)), line(1, 1, None)],
        from_cart: false,
        receiver: Some(pb::Receiver {
            name: " ".into(),
            phone: "02-123-4567".into(),
            city: "서울".into(),
            detail_address: "".into(),
        }),
    };
    let error = assert_error(
        orders
            .create_order(keyed(request, &token, "v-1"))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(
        fields(&error),
        [
            "lines[0].quantity",
            "lines[1].quantity",
            "lines[1].periodDays",
            "lines[2].itemId",
            "receiver.name",
            "receiver.detailAddress",
            "receiver.phone",
        ]
    );
    let error = assert_error(
        orders
            .create_order(keyed(
                pb::CreateOrderRequest {
                    lines: vec![],
                    from_cart: false,
                    receiver: None,
                },
                &token,
                "v-2",
            ))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(fields(&error), ["lines", "receiver"]);
    assert_error(
        orders
            .create_order(keyed(
                order_request(vec![line(404, 1, None)], false),
                &token,
                "v-3",
            ))
            .await
            .unwrap_err(),
        Code::NotFound,
        "ITEM_NOT_FOUND",
    );
    // A refused request did not burn its key.
    orders
        .create_order(keyed(
            order_request(vec![line(1, 1, None)], false),
            &token,
            "v-1",
        ))
        .await
        .unwrap();
}

async fn orders_belong_to_their_owner(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 10_000, 0);
    let mine = app.token(7);
    let theirs = app.token(8);
    let mut orders = app.orders();
    let mut ids = Vec::new();
    for n in 0..3 {
        app.clock.advance(Duration::seconds(1));
        let order = orders
            .create_order(keyed(
                order_request(vec![line(1, n + 1, None)], false),
                &mine,
                &format!("k{n}"),
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(order.order_id);
    }
    let other = orders
        .create_order(keyed(
            order_request(vec![line(1, 1, None)], false),
            &theirs,
            "k0",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_error(
        orders
            .get_order(authorized(
                pb::GetOrderRequest {
                    order_id: other.order_id,
                },
                &mine,
            ))
            .await
            .unwrap_err(),
        Code::NotFound,
        "ORDER_NOT_FOUND",
    );
    assert_error(
        orders
            .cancel_order(authorized(
                pb::CancelOrderRequest {
                    order_id: other.order_id,
                },
                &mine,
            ))
            .await
            .unwrap_err(),
        Code::NotFound,
        "ORDER_NOT_FOUND",
    );
    // Newest first, paged, filtered.
    let page = orders
        .list_orders(authorized(
            pb::ListOrdersRequest {
                status: None,
                page: Some(1),
                size: Some(2),
            },
            &mine,
        ))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<i64> = page.data.iter().map(|order| order.order_id).collect();
    assert_eq!(listed, [ids[2], ids[1]]);
    let info = page.page_info.unwrap();
    assert_eq!((info.total_elements, info.total_pages), (3, 2));
    orders
        .cancel_order(authorized(
            pb::CancelOrderRequest { order_id: ids[0] },
            &mine,
        ))
        .await
        .unwrap();
    let canceled = orders
        .list_orders(authorized(
            pb::ListOrdersRequest {
                status: Some(pb::OrderStatus::Canceled as i32),
                page: None,
                size: None,
            },
            &mine,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(canceled.data.len(), 1);
    assert_eq!(canceled.data[0].order_id, ids[0]);
    let past_the_end = orders
        .list_orders(authorized(
            pb::ListOrdersRequest {
                status: None,
                page: Some(9),
                size: Some(2),
            },
            &mine,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(past_the_end.data.is_empty());
    assert_eq!(past_the_end.page_info.unwrap().total_elements, 3);
    let error = assert_error(
        orders
            .list_orders(authorized(
                pb::ListOrdersRequest {
                    status: Some(0),
                    page: None,
                    size: Some(101),
                },
                &mine,
            ))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(fields(&error), ["status", "size"]);
    // No token, no orders.
    let status = orders
        .list_orders(tonic::Request::new(pb::ListOrdersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn create(
    app: &RunningOrder,
    token: &str,
    key: &str,
    lines: Vec<pb::OrderLineInput>,
    from_cart: bool,
) -> pb::Order {
    app.orders()
        .create_order(keyed(order_request(lines, from_cart), token, key))
        .await
        .unwrap()
        .into_inner()
}

fn paid(order: &pb::Order, payment_id: &str, amount: i64) -> pb::MarkOrderPaidRequest {
    pb::MarkOrderPaidRequest {
        order_id: order.order_id,
        payment_id: payment_id.into(),
        amount,
        paid_at: None,
    }
}

async fn every_illegal_transition_is_refused(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 10_000, 1_000);
    let token = app.token(7);
    let mut orders = app.orders();
    let mut internal = app.internal();
    let cancel = |order_id| authorized(pb::CancelOrderRequest { order_id }, &token);

    // REQUEST → CANCELED, then nothing.
    let unpaid = create(app, &token, "a", vec![line(1, 1, None)], false).await;
    let canceled = orders
        .cancel_order(cancel(unpaid.order_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(canceled.status, pb::OrderStatus::Canceled as i32);
    assert_error(
        orders
            .cancel_order(cancel(unpaid.order_id))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_ORDER_STATE",
    );
    assert_error(
        internal
            .mark_order_paid(paid(&unpaid, "tid-a", 9_000))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_ORDER_STATE",
    );
    assert_error(
        internal
            .mark_order_refunded(pb::MarkOrderRefundedRequest {
                order_id: unpaid.order_id,
                refunded_at: None,
            })
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_ORDER_STATE",
    );
    assert_eq!(app.events_of(unpaid.order_id).await, ["OrderCanceled"]);

    // REQUEST → PAID (amount checked; a repeat of the same payment answers the order).
    let order = create(app, &token, "b", vec![line(1, 2, None)], false).await;
    assert_error(
        internal
            .mark_order_paid(paid(&order, "tid-b", 20_000))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "AMOUNT_MISMATCH",
    );
    assert_error(
        internal
            .mark_order_refunded(pb::MarkOrderRefundedRequest {
                order_id: order.order_id,
                refunded_at: None,
            })
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_ORDER_STATE",
    );
    let paid_order = internal
        .mark_order_paid(paid(&order, "tid-b", 18_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid_order.status, pb::OrderStatus::Paid as i32);
    let again = internal
        .mark_order_paid(paid(&order, "tid-b", 18_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, paid_order);
    assert_error(
        internal
            .mark_order_paid(paid(&order, "tid-other", 18_000))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_ORDER_STATE",
    );
    // PAID → REFUND_PENDING → REFUNDED.
    let pending = orders
        .cancel_order(cancel(order.order_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.status, pb::OrderStatus::RefundPending as i32);
    assert_error(
        orders
            .cancel_order(cancel(order.order_id))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_ORDER_STATE",
    );
    let refunded = internal
        .mark_order_refunded(pb::MarkOrderRefundedRequest {
            order_id: order.order_id,
            refunded_at: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refunded.status, pb::OrderStatus::Refunded as i32);
    assert_error(
        orders
            .cancel_order(cancel(order.order_id))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_ORDER_STATE",
    );
    let history: Vec<i32> = refunded
        .status_history
        .iter()
        .map(|change| change.status)
        .collect();
    assert_eq!(
        history,
        [
            pb::OrderStatus::Request as i32,
            pb::OrderStatus::Paid as i32,
            pb::OrderStatus::RefundPending as i32,
            pb::OrderStatus::Refunded as i32
        ]
    );
    for change in &refunded.status_history {
        assert_eq!(
            change.at.unwrap().nanos % 1_000,
            0,
            "instants are microseconds"
        );
    }
    assert_eq!(
        app.events_of(order.order_id).await,
        ["OrderPaid", "OrderRefundRequested", "OrderRefunded"]
    );
    // The refund event carries the amount to refund.
    let (_, _, payload) = app
        .outbox()
        .await
        .into_iter()
        .find(|(event_type, _, _)| event_type == "OrderRefundRequested")
        .unwrap();
    let requested = events_pb::OrderRefundRequested::decode(payload.as_slice()).unwrap();
    assert_eq!(
        (requested.order_id, requested.user_id, requested.amount),
        (order.order_id, 7, 18_000)
    );
    // What the payment service reads.
    let for_payment = internal
        .get_order_for_payment(pb::GetOrderForPaymentRequest {
            order_id: order.order_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((for_payment.user_id, for_payment.total_price), (7, 18_000));
    assert_eq!(for_payment.item_name, "루테인");
    assert!(!for_payment.has_subscription_lines);
}

async fn paying_cleans_the_cart_and_starts_subscriptions(app: &mut RunningOrder) {
    app.catalog.put(1, "루테인", 20_000, 2_000);
    app.catalog.put(2, "오메가3", 35_000, 0);
    app.catalog.put(3, "비타민C", 9_000, 0);
    let token = app.token(7);
    let mut carts = app.carts();
    carts
        .add_cart_line(authorized(add("normal", 1, 1, None), &token))
        .await
        .unwrap();
    carts
        .add_cart_line(authorized(add("normal", 3, 1, None), &token))
        .await
        .unwrap();
    carts
        .add_cart_line(authorized(add("subscription", 2, 1, Some(30)), &token))
        .await
        .unwrap();
    carts
        .add_cart_line(authorized(add("subscription", 1, 1, Some(60)), &token))
        .await
        .unwrap();
    // Item 1 bought once, item 2 subscribed; item 3 and the item-1 subscription stay.
    let order = create(
        app,
        &token,
        "cart-order",
        vec![line(1, 1, None), line(2, 2, Some(30))],
        true,
    )
    .await;
    let for_payment = app
        .internal()
        .get_order_for_payment(pb::GetOrderForPaymentRequest {
            order_id: order.order_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(for_payment.has_subscription_lines);
    assert_eq!(for_payment.item_name, "루테인 외 1건");
    // 01:30 on Dec 1 in Seoul is still Nov 30 in UTC: the anchor is the Seoul date.
    let paid_at: chrono::DateTime<Utc> = "2026-11-30T16:30:00.123456Z".parse().unwrap();
    let mut request = paid(&order, "tid-1", order.total_price);
    request.paid_at = Some(timestamp(paid_at));
    let paid_order = app
        .internal()
        .mark_order_paid(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid_order.status_history[1].at, Some(timestamp(paid_at)));

    let normal = carts
        .get_cart(authorized(
            pb::GetCartRequest {
                kind: "normal".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let normal_items: Vec<i64> = normal.lines.iter().map(|line| line.item_id).collect();
    assert_eq!(normal_items, [3]);
    let subscription_cart = carts
        .get_cart(authorized(
            pb::GetCartRequest {
                kind: "subscription".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let subscription_items: Vec<i64> = subscription_cart
        .lines
        .iter()
        .map(|line| line.item_id)
        .collect();
    assert_eq!(subscription_items, [1]);

    let subscriptions = app
        .subscriptions()
        .list_subscriptions(authorized(pb::ListSubscriptionsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(subscriptions.data.len(), 1);
    let subscription = &subscriptions.data[0];
    assert_eq!(
        (
            subscription.item_id,
            subscription.quantity,
            subscription.period_days,
            subscription.unit_price,
            subscription.status,
            subscription.cycle,
            subscription.failed_attempts,
        ),
        (
            2,
            2,
            30,
            35_000,
            pb::SubscriptionStatus::Active as i32,
            0,
            0
        )
    );
    assert_eq!(subscription.anchor_date, "2026-12-01");
    assert_eq!(subscription.last_billed_date, "2026-12-01");
    assert_eq!(subscription.next_billing_date, "2026-12-31");
    let events = app.outbox().await;
    let types: Vec<&str> = events
        .iter()
        .map(|(event_type, _, _)| event_type.as_str())
        .collect();
    assert_eq!(types, ["OrderPaid", "SubscriptionCreated"]);
    let order_paid = events_pb::OrderPaid::decode(events[0].2.as_slice()).unwrap();
    assert_eq!(order_paid.total_price, 18_000 + 70_000);
    assert_eq!(order_paid.lines.len(), 2);
    let created = events_pb::SubscriptionCreated::decode(events[1].2.as_slice()).unwrap();
    let state = created.subscription.unwrap();
    assert_eq!((state.version, state.origin_order_id), (1, order.order_id));

    // Reviews: only items of a PAID order of that user.
    let mut internal = app.internal();
    let check = |user_id, item_id| pb::CheckPurchaseRequest {
        user_id,
        order_id: order.order_id,
        item_id,
    };
    assert!(
        internal
            .check_purchase(check(7, 1))
            .await
            .unwrap()
            .into_inner()
            .purchased
    );
    assert!(
        !internal
            .check_purchase(check(7, 3))
            .await
            .unwrap()
            .into_inner()
            .purchased
    );
    assert!(
        !internal
            .check_purchase(check(8, 1))
            .await
            .unwrap()
            .into_inner()
            .purchased
    );
}

/// A paid order with one subscription line of item 1 (10 000 × `quantity`, every 30 days),
/// paid on 2026-01-31 (Seoul); answers the subscription.
async fn subscribe(app: &RunningOrder, user_id: i64, key: &str, quantity: i32) -> pb::Subscription {
    app.catalog.put(1, "루테인", 11_000, 1_000);
    let token = app.token(user_id);
    let order = create(app, &token, key, vec![line(1, quantity, Some(30))], false).await;
    let mut request = paid(&order, key, order.total_price);
    request.paid_at = Some(timestamp("2026-01-31T03:00:00Z".parse().unwrap()));
    app.internal().mark_order_paid(request).await.unwrap();
    app.subscriptions()
        .list_subscriptions(authorized(pb::ListSubscriptionsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .data
        .into_iter()
        .find(|subscription| subscription.quantity == quantity)
        .unwrap()
}

fn versions(events: &[(String, String, Vec<u8>)], subscription_id: i64) -> Vec<(String, i64)> {
    events
        .iter()
        .filter(|(event_type, aggregate, _)| {
            event_type.starts_with("Subscription") && *aggregate == subscription_id.to_string()
        })
        .map(|(event_type, _, payload)| {
            let state = match event_type.as_str() {
                "SubscriptionCreated" => {
                    events_pb::SubscriptionCreated::decode(payload.as_slice())
                        .unwrap()
                        .subscription
                }
                "SubscriptionChanged" => {
                    events_pb::SubscriptionChanged::decode(payload.as_slice())
                        .unwrap()
                        .subscription
                }
                "SubscriptionCanceled" => {
                    events_pb::SubscriptionCanceled::decode(payload.as_slice())
                        .unwrap()
                        .subscription
                }
                "SubscriptionRenewed" => {
                    events_pb::SubscriptionRenewed::decode(payload.as_slice())
                        .unwrap()
                        .subscription
                }
                "SubscriptionSuspended" => {
                    events_pb::SubscriptionSuspended::decode(payload.as_slice())
                        .unwrap()
                        .subscription
                }
                other => panic!("unexpected {other}"),
            };
            (event_type.clone(), state.unwrap().version)
        })
        .collect()
}

async fn subscriptions_change_and_cancel(app: &mut RunningOrder) {
    let subscription = subscribe(app, 7, "s1", 1).await;
    assert_eq!(
        subscription.next_billing_date, "2026-03-02",
        "Jan 31 + 30 days"
    );
    let token = app.token(7);
    let mut subscriptions = app.subscriptions();
    let id = subscription.subscription_id;
    let update = |period_days, quantity| {
        authorized(
            pb::UpdateSubscriptionRequest {
                subscription_id: id,
                period_days,
                quantity,
            },
            &token,
        )
    };
    let changed = subscriptions
        .update_subscription(update(Some(60), None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        changed.next_billing_date, "2026-04-01",
        "last billed + the new period"
    );
    assert_eq!(changed.last_billed_date, "2026-01-31");
    let changed = subscriptions
        .update_subscription(update(None, Some(3)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (changed.quantity, changed.next_billing_date.as_str()),
        (3, "2026-04-01")
    );
    // The same values again change nothing (no event).
    subscriptions
        .update_subscription(update(Some(60), Some(3)))
        .await
        .unwrap();
    let error = assert_error(
        subscriptions
            .update_subscription(update(Some(29), Some(100)))
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(fields(&error), ["periodDays", "quantity"]);
    // Someone else's subscription does not exist for them.
    assert_error(
        subscriptions
            .get_subscription(authorized(
                pb::GetSubscriptionRequest {
                    subscription_id: id,
                },
                &app.token(8),
            ))
            .await
            .unwrap_err(),
        Code::NotFound,
        "SUBSCRIPTION_NOT_FOUND",
    );
    assert_error(
        subscriptions
            .cancel_subscription(authorized(
                pb::CancelSubscriptionRequest {
                    subscription_id: id,
                },
                &app.token(8),
            ))
            .await
            .unwrap_err(),
        Code::NotFound,
        "SUBSCRIPTION_NOT_FOUND",
    );
    let cancel = || {
        authorized(
            pb::CancelSubscriptionRequest {
                subscription_id: id,
            },
            &token,
        )
    };
    let canceled = subscriptions
        .cancel_subscription(cancel())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(canceled.status, pb::SubscriptionStatus::Canceled as i32);
    assert_error(
        subscriptions
            .cancel_subscription(cancel())
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_SUBSCRIPTION_STATE",
    );
    assert_error(
        subscriptions
            .update_subscription(update(Some(30), None))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_SUBSCRIPTION_STATE",
    );
    assert_eq!(
        versions(&app.outbox().await, id),
        [
            ("SubscriptionCreated".to_owned(), 1),
            ("SubscriptionChanged".to_owned(), 2),
            ("SubscriptionChanged".to_owned(), 3),
            ("SubscriptionCanceled".to_owned(), 4),
        ]
    );
}

async fn renewals_are_recorded_once_per_cycle(app: &mut RunningOrder) {
    let subscription = subscribe(app, 7, "r1", 2).await;
    let id = subscription.subscription_id;
    let mut internal = app.internal();
    let renewal = |cycle, billed_date: &str, amount| pb::RecordRenewalRequest {
        subscription_id: id,
        cycle,
        billed_date: billed_date.into(),
        amount,
        charged_at: None,
    };
    assert_error(
        internal
            .record_renewal(renewal(1, "2026-03-02", 19_999))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "AMOUNT_MISMATCH",
    );
    assert_error(
        internal
            .record_renewal(renewal(2, "2026-03-02", 20_000))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "RENEWAL_CYCLE_MISMATCH",
    );
    let first = internal
        .record_renewal(renewal(1, "2026-03-02", 20_000))
        .await
        .unwrap()
        .into_inner();
    let renewed = first.subscription.clone().unwrap();
    assert_eq!(
        (
            renewed.cycle,
            renewed.last_billed_date.as_str(),
            renewed.next_billing_date.as_str()
        ),
        (1, "2026-03-02", "2026-04-01")
    );
    let again = internal
        .record_renewal(renewal(1, "2026-03-02", 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.renewal_order_id, first.renewal_order_id,
        "exactly once per cycle"
    );
    // The renewal order is PAID, linked, and in the owner's history.
    let token = app.token(7);
    let order = app
        .orders()
        .get_order(authorized(
            pb::GetOrderRequest {
                order_id: first.renewal_order_id,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            order.status,
            order.subscription_id,
            order.cycle,
            order.total_price
        ),
        (pb::OrderStatus::Paid as i32, Some(id), Some(1), 20_000)
    );
    assert_eq!(order.receiver.unwrap().name, "김수령");

    // Failures: PAST_DUE with attempts counted once per attempt, a success resets, a final
    // failure suspends.
    let failure = |attempt, last| pb::RecordRenewalFailureRequest {
        subscription_id: id,
        cycle: 2,
        r#final: last,
        reason: "declined".into(),
        attempt,
    };
    let past_due = internal
        .record_renewal_failure(failure(1, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (past_due.status, past_due.failed_attempts),
        (pb::SubscriptionStatus::PastDue as i32, 1)
    );
    let repeated = internal
        .record_renewal_failure(failure(1, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repeated.failed_attempts, 1, "a repeated report counts once");
    assert_error(
        internal
            .record_renewal_failure(pb::RecordRenewalFailureRequest {
                cycle: 1,
                ..failure(2, false)
            })
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "RENEWAL_CYCLE_MISMATCH",
    );
    let recovered = internal
        .record_renewal(renewal(2, "2026-04-01", 20_000))
        .await
        .unwrap()
        .into_inner();
    let recovered = recovered.subscription.unwrap();
    assert_eq!(
        (recovered.status, recovered.failed_attempts),
        (pb::SubscriptionStatus::Active as i32, 0)
    );
    let mut failure3 = failure(1, false);
    failure3.cycle = 3;
    internal
        .record_renewal_failure(failure3.clone())
        .await
        .unwrap();
    failure3.attempt = 4;
    failure3.r#final = true;
    let suspended = internal
        .record_renewal_failure(failure3)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (suspended.status, suspended.failed_attempts),
        (pb::SubscriptionStatus::Suspended as i32, 4)
    );
    assert_error(
        internal
            .record_renewal(renewal(3, "2026-05-01", 20_000))
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_SUBSCRIPTION_STATE",
    );
    let history = versions(&app.outbox().await, id);
    let types: Vec<&str> = history
        .iter()
        .map(|(event_type, _)| event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "SubscriptionCreated",
            "SubscriptionRenewed",
            "SubscriptionChanged",
            "SubscriptionRenewed",
            "SubscriptionChanged",
            "SubscriptionSuspended"
        ]
    );
    let ordered: Vec<i64> = history.iter().map(|(_, version)| *version).collect();
    assert!(
        ordered.windows(2).all(|pair| pair[0] < pair[1]),
        "{ordered:?}"
    );

    // A cancelled subscription is never billed, nor marked past due.
    let other = subscribe(app, 9, "r2", 1).await;
    app.subscriptions()
        .cancel_subscription(authorized(
            pb::CancelSubscriptionRequest {
                subscription_id: other.subscription_id,
            },
            &app.token(9),
        ))
        .await
        .unwrap();
    assert_error(
        internal
            .record_renewal_failure(pb::RecordRenewalFailureRequest {
                subscription_id: other.subscription_id,
                cycle: 1,
                r#final: false,
                reason: "declined".into(),
                attempt: 1,
            })
            .await
            .unwrap_err(),
        Code::FailedPrecondition,
        "INVALID_SUBSCRIPTION_STATE",
    );
    let billing = internal
        .get_subscription_for_billing(pb::GetSubscriptionForBillingRequest {
            subscription_id: other.subscription_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(billing.status, pb::SubscriptionStatus::Canceled as i32);
}

async fn a_withdrawn_users_subscriptions_are_cancelled(app: &mut RunningOrder) {
    let first = subscribe(app, 7, "w1", 1).await;
    let second = subscribe(app, 7, "w2", 2).await;
    let bystander = subscribe(app, 8, "w3", 1).await;
    let store = order::store::OrderStore::new(app.db.clone(), BusinessCalendar::default());
    let handler =
        order::events::UserWithdrawnHandler::new(store, std::sync::Arc::new(app.clock.clone()));
    assert!(handler.wants("UserWithdrawn"));
    assert!(!handler.wants("OrderPaid"));
    let envelope = EventEnvelope {
        event_id: "0193-withdrawn-7".into(),
        event_type: "UserWithdrawn".into(),
        aggregate_id: "7".into(),
        occurred_at: Utc::now(),
        traceparent: None,
        payload: events_pb::UserWithdrawn {
            user_id: 7,
            withdrawn_at: None,
        }
        .encode_to_vec(),
    };
    // Delivered twice: applied once.
    for _ in 0..2 {
        handler
            .handle(
                &envelope,
                &InboxScope::new(app.db.clone(), "order", &envelope.event_id),
            )
            .await
            .unwrap();
    }
    let mut internal = app.internal();
    for (subscription, expected) in [
        (&first, pb::SubscriptionStatus::Canceled),
        (&second, pb::SubscriptionStatus::Canceled),
        (&bystander, pb::SubscriptionStatus::Active),
    ] {
        let now = internal
            .get_subscription_for_billing(pb::GetSubscriptionForBillingRequest {
                subscription_id: subscription.subscription_id,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            now.status, expected as i32,
            "{}",
            subscription.subscription_id
        );
    }
    let canceled: Vec<String> = app
        .outbox()
        .await
        .into_iter()
        .filter(|(event_type, _, _)| event_type == "SubscriptionCanceled")
        .map(|(_, _, payload)| {
            events_pb::SubscriptionCanceled::decode(payload.as_slice())
                .unwrap()
                .reason
        })
        .collect();
    assert_eq!(canceled, ["USER_WITHDRAWN", "USER_WITHDRAWN"]);
    // A payload that does not decode is permanent: it goes to the dead letters.
    let broken = EventEnvelope {
        event_id: "0193-broken".into(),
        payload: vec![0xff, 0xff],
        ..envelope
    };
    let outcome = handler
        .handle(
            &broken,
            &InboxScope::new(app.db.clone(), "order", &broken.event_id),
        )
        .await;
    assert!(matches!(
        outcome,
        Err(pillivery_platform::events::HandlerError::Permanent(_))
    ));
}

/// Records the types of the events a consumer is handed.
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

#[pillivery_platform::events::async_trait]
impl EventHandler for Recorder {
    fn wants(&self, _event_type: &str) -> bool {
        true
    }

    async fn handle(
        &self,
        event: &EventEnvelope,
        _scope: &InboxScope,
    ) -> Result<(), pillivery_platform::events::HandlerError> {
        self.0.lock().unwrap().push(event.event_type.clone());
        Ok(())
    }
}

async fn the_relay_delivers_the_outbox(app: &mut RunningOrder) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks = pillivery_platform::shutdown::Tasks::new();
    let shutdown = pillivery_platform::shutdown::Shutdown::new();
    pillivery_platform::events::Consumer::new(
        "relay-test",
        &["order"],
        app.db.clone(),
        app.bus.clone(),
        Recorder(seen.clone()),
        &pillivery_platform::events::EventsConfig {
            consumer_block_ms: 50,
            ..Default::default()
        },
    )
    .spawn(&tasks, &shutdown);
    app.catalog.put(1, "루테인", 10_000, 0);
    let token = app.token(7);
    let order = create(app, &token, "relay", vec![line(1, 1, Some(30))], false).await;
    app.internal()
        .mark_order_paid(paid(&order, "tid", 10_000))
        .await
        .unwrap();
    let delivered = eventually(
        "the relay to publish the paid order's events",
        std::time::Duration::from_secs(10),
        || async {
            let seen = seen.lock().unwrap().clone();
            (seen.len() >= 2).then_some(seen)
        },
    )
    .await;
    assert_eq!(delivered, ["OrderPaid", "SubscriptionCreated"]);
    shutdown.trigger();
    tasks.close();
    tasks.wait().await;
}

mod sweep {
    //! The unpaid-order sweep with a manual clock: a service with a 20 ms sweep interval, an
    //! order created, the clock moved past 30 minutes, and the order polled until the sweep
    //! cancelled it (no sleeping for the timeout itself).
    use super::*;

    async fn scenario(backend: Option<Backend>) {
        let Some(backend) = backend else { return };
        let app = RunningOrder::start_with(&backend, |config| {
            config.unpaid_sweep_interval_ms = 20;
        })
        .await;
        app.catalog.put(1, "루테인", 10_000, 0);
        let token = app.token(7);
        let early = create(&app, &token, "early", vec![line(1, 1, None)], false).await;
        app.clock.advance(Duration::minutes(20));
        let late = create(&app, &token, "late", vec![line(1, 2, None)], false).await;
        let paid_one = create(&app, &token, "paid", vec![line(1, 3, None)], false).await;
        app.internal()
            .mark_order_paid(paid(&paid_one, "tid", 30_000))
            .await
            .unwrap();
        let status_of = |order_id| {
            let mut orders = app.orders();
            let token = token.clone();
            async move {
                orders
                    .get_order(authorized(pb::GetOrderRequest { order_id }, &token))
                    .await
                    .unwrap()
                    .into_inner()
                    .status
            }
        };
        // 31 minutes after the first order: only it is past the timeout.
        app.clock.advance(Duration::minutes(11));
        eventually(
            "the early order to be cancelled",
            std::time::Duration::from_secs(10),
            || async {
                (status_of(early.order_id).await == pb::OrderStatus::Canceled as i32).then_some(())
            },
        )
        .await;
        // One sweep cancels everything due at once, so the late order was not due.
        assert_eq!(
            status_of(late.order_id).await,
            pb::OrderStatus::Request as i32
        );
        app.clock.advance(Duration::minutes(20));
        eventually(
            "the late order to be cancelled",
            std::time::Duration::from_secs(10),
            || async {
                (status_of(late.order_id).await == pb::OrderStatus::Canceled as i32).then_some(())
            },
        )
        .await;
        assert_eq!(
            status_of(paid_one.order_id).await,
            pb::OrderStatus::Paid as i32
        );
        let canceled: Vec<String> = app
            .outbox()
            .await
            .into_iter()
            .filter(|(event_type, _, _)| event_type == "OrderCanceled")
            .map(|(_, _, payload)| {
                events_pb::OrderCanceled::decode(payload.as_slice())
                    .unwrap()
                    .reason
            })
            .collect();
        assert_eq!(canceled, ["UNPAID_TIMEOUT", "UNPAID_TIMEOUT"]);
        app.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        scenario(Some(Backend::Sqlite)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        scenario(Backend::postgres()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mysql() {
        scenario(Backend::mysql()).await
    }
}
