//! Reviews (SPEC section 4): the catalog's `ReviewService` on a random port with a fresh
//! database, and the catalog's outside world as fakes: an `OrderInternalService` that knows
//! which (user, order, item) purchases are PAID, and a `UserInternalService` that knows display
//! names, each a real gRPC server on a random loopback port, reached through the catalog's
//! configured edges exactly as in production.
//!
//! Every scenario runs on SQLite, and on PostgreSQL / MySQL when `PILLIVERY_TEST_POSTGRES_URL` /
//! `PILLIVERY_TEST_MYSQL_URL` name a server.

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{Options, RunningCatalog, assert_error, authorized, fields};
use pillivery_platform::auth::Role;
use pillivery_platform::client::UpstreamConfig;
use pillivery_platform::shutdown::Shutdown;
use pillivery_proto::catalog as pb;
use pillivery_proto::catalog::catalog_admin_service_client::CatalogAdminServiceClient;
use pillivery_proto::catalog::catalog_service_client::CatalogServiceClient;
use pillivery_proto::catalog::review_service_client::ReviewServiceClient;
use pillivery_proto::order as order_pb;
use pillivery_proto::order::order_internal_service_server::{
    OrderInternalService, OrderInternalServiceServer,
};
use pillivery_proto::user as user_pb;
use pillivery_proto::user::user_internal_service_server::{
    UserInternalService, UserInternalServiceServer,
};
use pillivery_testkit::Backend;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

on_every_backend!(
    a_buyer_reviews_with_the_name_the_user_service_gives,
    only_a_paid_purchase_may_be_reviewed,
    a_purchase_is_reviewed_once_until_its_review_is_deleted,
    every_violation_is_reported_at_once,
    only_the_author_edits_and_deletes,
    counters_stay_exact_through_create_edit_and_delete,
    concurrent_reviews_of_one_item_add_up_exactly,
    lists_sort_and_page,
    a_review_makes_cached_lists_stale,
    failing_neighbours_answer_503_and_write_nothing,
);

// ---------------------------------------------------------------------------------------------
// The outside world

/// `OrderInternalService` as far as reviews use it: `CheckPurchase` answers from a set of PAID
/// purchases; every other RPC is not part of this world.
#[derive(Clone, Default)]
struct FakeOrders {
    paid: Arc<Mutex<HashSet<(i64, i64, i64)>>>,
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl FakeOrders {
    /// `user_id` paid `order_id`, which holds `item_id`.
    fn paid(&self, user_id: i64, order_id: i64, item_id: i64) {
        self.paid
            .lock()
            .unwrap()
            .insert((user_id, order_id, item_id));
    }
}

fn not_here<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "not part of the reviews' outside world",
    ))
}

#[tonic::async_trait]
impl OrderInternalService for FakeOrders {
    async fn get_order_for_payment(
        &self,
        _: Request<order_pb::GetOrderForPaymentRequest>,
    ) -> Result<Response<order_pb::OrderForPayment>, Status> {
        not_here()
    }

    async fn mark_order_paid(
        &self,
        _: Request<order_pb::MarkOrderPaidRequest>,
    ) -> Result<Response<order_pb::Order>, Status> {
        not_here()
    }

    async fn mark_order_refunded(
        &self,
        _: Request<order_pb::MarkOrderRefundedRequest>,
    ) -> Result<Response<order_pb::Order>, Status> {
        not_here()
    }

    async fn get_subscription_for_billing(
        &self,
        _: Request<order_pb::GetSubscriptionForBillingRequest>,
    ) -> Result<Response<order_pb::Subscription>, Status> {
        not_here()
    }

    async fn record_renewal(
        &self,
        _: Request<order_pb::RecordRenewalRequest>,
    ) -> Result<Response<order_pb::RecordRenewalResponse>, Status> {
        not_here()
    }

    async fn record_renewal_failure(
        &self,
        _: Request<order_pb::RecordRenewalFailureRequest>,
    ) -> Result<Response<order_pb::Subscription>, Status> {
        not_here()
    }

    async fn check_purchase(
        &self,
        request: Request<order_pb::CheckPurchaseRequest>,
    ) -> Result<Response<order_pb::CheckPurchaseResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(Status::unavailable("order database down"));
        }
        let request = request.into_inner();
        let purchased = self.paid.lock().unwrap().contains(&(
            request.user_id,
            request.order_id,
            request.item_id,
        ));
        Ok(Response::new(order_pb::CheckPurchaseResponse { purchased }))
    }
}

/// `UserInternalService`: display names of active accounts.
#[derive(Clone, Default)]
struct FakeUsers {
    names: Arc<Mutex<HashMap<i64, String>>>,
    failing: Arc<AtomicBool>,
}

impl FakeUsers {
    fn named(&self, user_id: i64, name: &str) {
        self.names.lock().unwrap().insert(user_id, name.to_owned());
    }
}

#[tonic::async_trait]
impl UserInternalService for FakeUsers {
    async fn get_display_names(
        &self,
        request: Request<user_pb::GetDisplayNamesRequest>,
    ) -> Result<Response<user_pb::GetDisplayNamesResponse>, Status> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(Status::internal("user database corrupt"));
        }
        let names = self.names.lock().unwrap();
        let users = request
            .into_inner()
            .user_ids
            .into_iter()
            .filter_map(|user_id| {
                names.get(&user_id).map(|name| user_pb::UserDisplayName {
                    user_id,
                    display_name: name.clone(),
                })
            })
            .collect();
        Ok(Response::new(user_pb::GetDisplayNamesResponse { users }))
    }
}

/// Serves the two fakes on one random loopback port until `stop`; answers its target.
async fn serve_fakes(orders: FakeOrders, users: FakeUsers, stop: Shutdown) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(OrderInternalServiceServer::new(orders))
            .add_service(UserInternalServiceServer::new(users))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move { stop.wait().await },
            )
            .await
    });
    format!("http://{address}")
}

// ---------------------------------------------------------------------------------------------
// The catalog under test

struct App {
    running: RunningCatalog,
    reviews: ReviewServiceClient<Channel>,
    catalog: CatalogServiceClient<Channel>,
    admin: CatalogAdminServiceClient<Channel>,
    orders: FakeOrders,
    users: FakeUsers,
}

async fn run<F, Fut>(backend: Option<Backend>, test: F)
where
    F: FnOnce(App) -> Fut,
    Fut: Future<Output = App>,
{
    let Some(backend) = backend else { return };
    let orders = FakeOrders::default();
    let users = FakeUsers::default();
    let stop = Shutdown::new();
    let target = serve_fakes(orders.clone(), users.clone(), stop.clone()).await;
    let running = RunningCatalog::start_with(
        &backend,
        Options {
            order: Some(UpstreamConfig::new(target.clone())),
            user: Some(UpstreamConfig::new(target)),
            ..Options::default()
        },
    )
    .await;
    let app = App {
        reviews: ReviewServiceClient::new(running.channel.clone()),
        catalog: CatalogServiceClient::new(running.channel.clone()),
        admin: CatalogAdminServiceClient::new(running.channel.clone()),
        running,
        orders,
        users,
    };
    let app = test(app).await;
    app.running.stop().await;
    stop.trigger();
}

impl App {
    fn token(&self, user_id: i64) -> String {
        self.running.token(user_id, Role::User)
    }

    /// Creates items through the admin service; answers their ids in order.
    async fn items(&mut self, names: &[&str]) -> Vec<i64> {
        let items = names.iter().map(|name| draft(name)).collect();
        let request = authorized(
            pb::ImportItemsRequest { items },
            &self.running.token(1, Role::Admin),
        );
        self.admin
            .import_items(request)
            .await
            .expect("import")
            .into_inner()
            .item_ids
    }

    /// `user_id` (named `user{user_id}`) paid order `order_id` holding `item_id`.
    fn buyer(&self, user_id: i64, order_id: i64, item_id: i64) {
        self.orders.paid(user_id, order_id, item_id);
        self.users.named(user_id, &format!("user{user_id}"));
    }

    async fn create(
        &mut self,
        user_id: i64,
        item_id: i64,
        order_id: i64,
        star: i32,
        content: &str,
    ) -> Result<pb::Review, Status> {
        let request = authorized(
            pb::CreateReviewRequest {
                item_id,
                order_id,
                star,
                content: content.to_owned(),
            },
            &self.token(user_id),
        );
        self.reviews
            .create_review(request)
            .await
            .map(Response::into_inner)
    }

    /// A review by a buyer made one for the occasion (order id = user id).
    async fn review_as_buyer(&mut self, user_id: i64, item_id: i64, star: i32) -> pb::Review {
        self.buyer(user_id, user_id, item_id);
        self.create(user_id, item_id, user_id, star, "좋아요")
            .await
            .expect("create")
    }

    async fn update(
        &mut self,
        user_id: i64,
        review_id: i64,
        star: Option<i32>,
        content: Option<&str>,
    ) -> Result<pb::Review, Status> {
        let request = authorized(
            pb::UpdateReviewRequest {
                review_id,
                star,
                content: content.map(str::to_owned),
            },
            &self.token(user_id),
        );
        self.reviews
            .update_review(request)
            .await
            .map(Response::into_inner)
    }

    async fn delete(&mut self, user_id: i64, review_id: i64) -> Result<(), Status> {
        let request = authorized(pb::DeleteReviewRequest { review_id }, &self.token(user_id));
        self.reviews.delete_review(request).await.map(|_| ())
    }

    async fn get(&mut self, review_id: i64) -> Result<pb::Review, Status> {
        self.reviews
            .get_review(pb::GetReviewRequest { review_id })
            .await
            .map(Response::into_inner)
    }

    async fn list(
        &mut self,
        item_id: i64,
        sort: pb::ReviewSort,
        page: Option<i32>,
        size: Option<i32>,
    ) -> Result<pb::ReviewPage, Status> {
        self.reviews
            .list_item_reviews(pb::ListItemReviewsRequest {
                item_id,
                sort: sort as i32,
                page,
                size,
            })
            .await
            .map(Response::into_inner)
    }

    /// (starAvg, reviewCount) as item detail shows them.
    async fn stars(&mut self, item_id: i64) -> (f64, i64) {
        let item = self
            .catalog
            .get_item(pb::GetItemRequest { item_id })
            .await
            .expect("item")
            .into_inner();
        (item.star_avg, item.review_count)
    }

    /// (review_count, star_sum, star_avg_centi) as stored.
    async fn stored(&self, item_id: i64) -> (i64, i64, i64) {
        let counters = self
            .running
            .store()
            .await
            .review_counters(item_id)
            .await
            .unwrap()
            .expect("the item row");
        (
            counters.review_count,
            counters.star_sum,
            counters.star_avg_centi,
        )
    }
}

fn draft(name: &str) -> pb::ItemDraft {
    pb::ItemDraft {
        product_name: Some(name.to_owned()),
        enterprise: Some("리뷰제약".to_owned()),
        thumbnail: Some(format!("https://cdn.test/{name}.jpg")),
        description_image: Some(format!("https://cdn.test/{name}-detail.jpg")),
        main_function: Some("눈 건강에 도움을 줄 수 있음".to_owned()),
        base_standard: Some("루테인 20mg".to_owned()),
        intake: Some("1일 1회, 1회 1캡슐".to_owned()),
        serving_use: Some(String::new()),
        preserve_period: Some("서늘한 곳에 보관".to_owned()),
        distribution_period: Some("제조일로부터 24개월".to_owned()),
        statement_number: Some("200400200001".to_owned()),
        registered_date: Some("2024-02-29".to_owned()),
        sungsang: Some("노란색 연질캡슐".to_owned()),
        categories: vec![pb::Category::Eye as i32],
        origin_price: Some(15_000),
        discount_rate: Some(0.125),
    }
}

fn ids(page: &pb::ReviewPage) -> Vec<i64> {
    page.data.iter().map(|review| review.review_id).collect()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn a_buyer_reviews_with_the_name_the_user_service_gives(mut app: App) -> App {
    let [item] = app.items(&["루테인"]).await[..] else {
        panic!("one item")
    };
    app.orders.paid(7, 70, item);
    app.users.named(7, "건강지킴이");
    let review = app
        .create(7, item, 70, 4, "  눈이 편해졌어요\n")
        .await
        .expect("create");
    assert!(review.review_id > 0);
    assert_eq!(
        (
            review.item_id,
            review.order_id,
            review.user_id,
            review.display_name.as_str(),
            review.star,
            review.content.as_str()
        ),
        (item, 70, 7, "건강지킴이", 4, "눈이 편해졌어요"),
        "the name is the user service's and the text is trimmed"
    );
    assert_eq!(review.created_at, review.updated_at);
    assert_eq!(app.get(review.review_id).await.unwrap(), review);
    assert_eq!(app.stars(item).await, (4.0, 1));

    // The name is the one at the time of writing: a later rename does not touch it.
    app.users.named(7, "새이름");
    assert_eq!(
        app.get(review.review_id).await.unwrap().display_name,
        "건강지킴이"
    );

    // Mine, with my token; nobody else's.
    let mine = app
        .reviews
        .list_my_reviews(authorized(
            pb::ListMyReviewsRequest {
                sort: 0,
                page: None,
                size: None,
            },
            &app.token(7),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.data, vec![review]);
    assert_eq!(mine.page_info.unwrap().total_elements, 1);
    let theirs = app
        .reviews
        .list_my_reviews(authorized(
            pb::ListMyReviewsRequest::default(),
            &app.token(8),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.data.is_empty());
    let anonymous = app
        .reviews
        .list_my_reviews(pb::ListMyReviewsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // A token of an account the user service no longer knows (withdrawn) writes nothing.
    app.orders.paid(9, 90, item);
    let status = app.create(9, item, 90, 5, "탈퇴한 사람").await.unwrap_err();
    assert_error(status, Code::Unauthenticated, "INVALID_TOKEN");
    assert_eq!(app.stored(item).await, (1, 4, 400));
    app
}

async fn only_a_paid_purchase_may_be_reviewed(mut app: App) -> App {
    let [item, other] = app.items(&["오메가3", "비타민D"]).await[..] else {
        panic!("two items")
    };
    app.buyer(1, 10, item);
    app.users.named(2, "user2");
    // Another user's order, another item of my order, an order I do not have: not purchased.
    for (user_id, order_id, item_id) in [(2, 10, item), (1, 10, other), (1, 11, item)] {
        let status = app
            .create(user_id, item_id, order_id, 5, "최고")
            .await
            .unwrap_err();
        assert_error(status, Code::FailedPrecondition, "NOT_PURCHASED");
    }
    assert_eq!(app.stored(item).await, (0, 0, 0));
    assert_eq!(app.stored(other).await, (0, 0, 0));
    // An unknown or deleted item is 404 before anyone is asked.
    let asked = app.orders.calls.load(Ordering::SeqCst);
    let status = app.create(1, 987_654, 10, 5, "최고").await.unwrap_err();
    assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");
    app.admin
        .delete_item(authorized(
            pb::DeleteItemRequest { item_id: other },
            &app.running.token(1, Role::Admin),
        ))
        .await
        .unwrap();
    app.buyer(1, 12, other);
    let status = app.create(1, other, 12, 5, "최고").await.unwrap_err();
    assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");
    assert_eq!(app.orders.calls.load(Ordering::SeqCst), asked);
    // No token at all.
    let status = app
        .reviews
        .create_review(pb::CreateReviewRequest {
            item_id: item,
            order_id: 10,
            star: 5,
            content: "x".into(),
        })
        .await
        .unwrap_err();
    assert_error(status, Code::Unauthenticated, "AUTHENTICATION_REQUIRED");
    // The buyer may.
    app.create(1, item, 10, 5, "최고").await.expect("the buyer");
    app
}

async fn a_purchase_is_reviewed_once_until_its_review_is_deleted(mut app: App) -> App {
    let [item, other] = app.items(&["유산균", "밀크씨슬"]).await[..] else {
        panic!("two items")
    };
    app.buyer(1, 10, item);
    app.buyer(1, 10, other);
    app.buyer(1, 11, item);
    let first = app.create(1, item, 10, 5, "처음").await.unwrap();
    let status = app.create(1, item, 10, 1, "또").await.unwrap_err();
    assert_error(status, Code::AlreadyExists, "ALREADY_REVIEWED");
    // Once per (order, item): the same order's other item, and another order of the same item.
    app.create(1, other, 10, 4, "다른 상품").await.unwrap();
    app.create(1, item, 11, 3, "재구매").await.unwrap();
    assert_eq!(app.stored(item).await, (2, 8, 400));

    // Racing duplicates: exactly one wins, the others are ALREADY_REVIEWED.
    app.buyer(2, 20, item);
    let token = app.token(2);
    let attempts = (0..8).map(|n| {
        let mut client = app.reviews.clone();
        let token = token.clone();
        async move {
            client
                .create_review(authorized(
                    pb::CreateReviewRequest {
                        item_id: item,
                        order_id: 20,
                        star: 2,
                        content: format!("동시에 {n}"),
                    },
                    &token,
                ))
                .await
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let won = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(won, 1, "{outcomes:?}");
    for outcome in outcomes.into_iter().filter_map(Result::err) {
        assert_error(outcome, Code::AlreadyExists, "ALREADY_REVIEWED");
    }
    assert_eq!(app.stored(item).await, (3, 10, 333));

    // A deleted review frees its purchase: the buyer may write a new one.
    app.delete(1, first.review_id).await.unwrap();
    let again = app.create(1, item, 10, 4, "다시 씀").await.unwrap();
    assert_ne!(again.review_id, first.review_id);
    assert_eq!(app.stored(item).await, (3, 9, 300));
    app
}

async fn every_violation_is_reported_at_once(mut app: App) -> App {
    let [item] = app.items(&["코엔자임"]).await[..] else {
        panic!("one item")
    };
    app.buyer(1, 10, item);
    let status = app.create(1, item, 0, 6, "   ").await.unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(fields(&error), ["orderId", "star", "content"]);
    let status = app
        .create(1, item, 10, 0, &"가".repeat(1001))
        .await
        .unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(fields(&error), ["star", "content"]);
    // The bounds themselves are fine.
    let review = app
        .create(1, item, 10, 1, &"가".repeat(1000))
        .await
        .unwrap();
    let status = app
        .update(1, review.review_id, Some(-1), Some(""))
        .await
        .unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(fields(&error), ["star", "content"]);
    let status = app
        .list(item, pb::ReviewSort::Unspecified, Some(0), Some(101))
        .await
        .unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(fields(&error), ["page", "size"]);
    let status = app
        .reviews
        .list_item_reviews(pb::ListItemReviewsRequest {
            item_id: item,
            sort: 42,
            page: None,
            size: None,
        })
        .await
        .unwrap_err();
    let error = assert_error(status, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(fields(&error), ["sort"]);
    // Nothing invalid was counted.
    assert_eq!(app.stored(item).await, (1, 1, 100));
    app
}

async fn only_the_author_edits_and_deletes(mut app: App) -> App {
    let [item] = app.items(&["마그네슘"]).await[..] else {
        panic!("one item")
    };
    let review = app.review_as_buyer(1, item, 2).await;
    // Someone else's review answers like a missing one.
    let status = app
        .update(2, review.review_id, Some(5), None)
        .await
        .unwrap_err();
    assert_error(status, Code::NotFound, "REVIEW_NOT_FOUND");
    let status = app.delete(2, review.review_id).await.unwrap_err();
    assert_error(status, Code::NotFound, "REVIEW_NOT_FOUND");
    let status = app
        .update(2, review.review_id, None, None)
        .await
        .unwrap_err();
    assert_error(status, Code::NotFound, "REVIEW_NOT_FOUND");
    assert_eq!(app.get(review.review_id).await.unwrap(), review);

    // The author edits: the fields present change, the others stay.
    let edited = app
        .update(1, review.review_id, None, Some(" 다시 생각해보니 좋네요 "))
        .await
        .unwrap();
    assert_eq!(
        (edited.star, edited.content.as_str()),
        (2, "다시 생각해보니 좋네요")
    );
    assert_eq!(edited.created_at, review.created_at);
    let edited = app
        .update(1, review.review_id, Some(5), None)
        .await
        .unwrap();
    assert_eq!(
        (edited.star, edited.content.as_str()),
        (5, "다시 생각해보니 좋네요")
    );
    assert_eq!(app.get(review.review_id).await.unwrap(), edited);
    // An empty edit answers the review as it is.
    assert_eq!(
        app.update(1, review.review_id, None, None).await.unwrap(),
        edited
    );

    // The author deletes: gone from every read, and a second delete is 404.
    app.delete(1, review.review_id).await.unwrap();
    let status = app.get(review.review_id).await.unwrap_err();
    assert_error(status, Code::NotFound, "REVIEW_NOT_FOUND");
    let status = app.delete(1, review.review_id).await.unwrap_err();
    assert_error(status, Code::NotFound, "REVIEW_NOT_FOUND");
    let status = app
        .update(1, review.review_id, Some(1), None)
        .await
        .unwrap_err();
    assert_error(status, Code::NotFound, "REVIEW_NOT_FOUND");
    let page = app
        .list(item, pb::ReviewSort::Newest, None, None)
        .await
        .unwrap();
    assert!(page.data.is_empty());
    assert_eq!(app.stars(item).await, (0.0, 0));
    app
}

async fn counters_stay_exact_through_create_edit_and_delete(mut app: App) -> App {
    let [item] = app.items(&["비오틴"]).await[..] else {
        panic!("one item")
    };
    assert_eq!(app.stars(item).await, (0.0, 0));
    let five = app.review_as_buyer(1, item, 5).await;
    let four = app.review_as_buyer(2, item, 4).await;
    app.review_as_buyer(3, item, 4).await;
    // 13 / 3 = 4.333…
    assert_eq!(app.stored(item).await, (3, 13, 433));
    assert_eq!(app.stars(item).await, (4.33, 3));
    // 14 / 3 = 4.666… rounds up.
    app.update(2, four.review_id, Some(5), None).await.unwrap();
    assert_eq!(app.stored(item).await, (3, 14, 467));
    assert_eq!(app.stars(item).await, (4.67, 3));
    // A text-only edit leaves the counters alone.
    app.update(2, four.review_id, None, Some("글만 고침"))
        .await
        .unwrap();
    assert_eq!(app.stored(item).await, (3, 14, 467));
    // 15 / 4 = 3.75.
    app.review_as_buyer(4, item, 1).await;
    assert_eq!(app.stars(item).await, (3.75, 4));
    // 10 / 3 = 3.333…
    app.delete(1, five.review_id).await.unwrap();
    assert_eq!(app.stored(item).await, (3, 10, 333));
    // Means with a third: 5 / 3 rounds up, 4 / 3 down; 3 / 2 is exact.
    let [half] = app.items(&["반올림"]).await[..] else {
        panic!("one item")
    };
    app.review_as_buyer(11, half, 1).await;
    let two = app.review_as_buyer(12, half, 2).await;
    assert_eq!(app.stars(half).await, (1.5, 2));
    app.review_as_buyer(13, half, 2).await;
    // 5 / 3 = 1.666… → 1.67.
    assert_eq!(app.stored(half).await, (3, 5, 167));
    app.update(12, two.review_id, Some(1), None).await.unwrap();
    // 4 / 3 = 1.333… → 1.33.
    assert_eq!(app.stored(half).await, (3, 4, 133));
    // Deleting everything returns to zero.
    let all = app
        .list(item, pb::ReviewSort::Newest, None, None)
        .await
        .unwrap();
    for review in all.data {
        app.delete(review.user_id, review.review_id).await.unwrap();
    }
    assert_eq!(app.stored(item).await, (0, 0, 0));
    assert_eq!(app.stars(item).await, (0.0, 0));
    app
}

async fn concurrent_reviews_of_one_item_add_up_exactly(mut app: App) -> App {
    let [item] = app.items(&["멀티비타민"]).await[..] else {
        panic!("one item")
    };
    // 50 buyers, each with their own paid order; every third gives 5 stars, the others 4.
    let star = |user_id: i64| if user_id % 3 == 0 { 5 } else { 4 };
    for user_id in 1..=50 {
        app.buyer(user_id, 1_000 + user_id, item);
    }
    let creates = (1..=50).map(|user_id| {
        let mut client = app.reviews.clone();
        let token = app.token(user_id);
        async move {
            client
                .create_review(authorized(
                    pb::CreateReviewRequest {
                        item_id: item,
                        order_id: 1_000 + user_id,
                        star: star(user_id),
                        content: format!("{user_id}번 구매자"),
                    },
                    &token,
                ))
                .await
                .map(Response::into_inner)
        }
    });
    let created: Vec<pb::Review> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|outcome| outcome.expect("every buyer's review"))
        .collect();
    // 16 fives and 34 fours: 80 + 136 = 216 over 50 = 4.32.
    let sum: i64 = (1..=50).map(|user_id| i64::from(star(user_id))).sum();
    assert_eq!(sum, 216);
    assert_eq!(app.stored(item).await, (50, 216, 432));
    assert_eq!(app.stars(item).await, (4.32, 50));

    // Then at once: 20 authors change their star to 1 and 10 others delete theirs.
    let edits = created[..20].iter().map(|review| {
        let mut client = app.reviews.clone();
        let token = app.token(review.user_id);
        let review_id = review.review_id;
        async move {
            client
                .update_review(authorized(
                    pb::UpdateReviewRequest {
                        review_id,
                        star: Some(1),
                        content: None,
                    },
                    &token,
                ))
                .await
                .map(|_| ())
        }
    });
    let deletes = created[20..30].iter().map(|review| {
        let mut client = app.reviews.clone();
        let token = app.token(review.user_id);
        let review_id = review.review_id;
        async move {
            client
                .delete_review(authorized(pb::DeleteReviewRequest { review_id }, &token))
                .await
                .map(|_| ())
        }
    });
    let (edited, deleted) = tokio::join!(
        futures::future::join_all(edits),
        futures::future::join_all(deletes)
    );
    for outcome in edited.into_iter().chain(deleted) {
        outcome.expect("every edit and delete");
    }
    let remaining: i64 = 20
        + created[30..]
            .iter()
            .map(|review| i64::from(review.star))
            .sum::<i64>();
    let count = 40;
    let centi = catalog::domain::star_avg_centi(remaining, count);
    assert_eq!(app.stored(item).await, (count, remaining, centi));
    let listed = app
        .list(item, pb::ReviewSort::Newest, None, Some(100))
        .await
        .unwrap();
    assert_eq!(listed.page_info.unwrap().total_elements, count);
    assert_eq!(
        listed.data.iter().map(|r| i64::from(r.star)).sum::<i64>(),
        remaining
    );
    app
}

async fn lists_sort_and_page(mut app: App) -> App {
    let [item, other] = app.items(&["철분", "아연"]).await[..] else {
        panic!("two items")
    };
    let mut written = Vec::new();
    for (user_id, star) in [(1, 3), (2, 5), (3, 1), (4, 5), (5, 2)] {
        written.push(app.review_as_buyer(user_id, item, star).await.review_id);
    }
    app.review_as_buyer(6, other, 4).await;
    let [r3, r5a, r1, r5b, r2] = written[..] else {
        panic!("five reviews")
    };
    let newest = app
        .list(item, pb::ReviewSort::Unspecified, None, None)
        .await
        .unwrap();
    assert_eq!(
        ids(&newest),
        [r2, r5b, r1, r5a, r3],
        "NEWEST is the default"
    );
    let info = newest.page_info.unwrap();
    assert_eq!(
        (info.page, info.size, info.total_elements, info.total_pages),
        (1, 20, 5, 1)
    );
    let table = [
        (pb::ReviewSort::Oldest, [r3, r5a, r1, r5b, r2]),
        // Equal stars: newest first.
        (pb::ReviewSort::StarH, [r5b, r5a, r3, r2, r1]),
        (pb::ReviewSort::StarL, [r1, r2, r3, r5b, r5a]),
    ];
    for (sort, want) in table {
        let page = app.list(item, sort, None, None).await.unwrap();
        assert_eq!(ids(&page), want, "{sort:?}");
    }
    // Pages of 2: the last holds one, past it is empty with the true totals.
    let mut walked = Vec::new();
    for page in 1..=3 {
        let answer = app
            .list(item, pb::ReviewSort::StarH, Some(page), Some(2))
            .await
            .unwrap();
        assert_eq!(answer.page_info.unwrap().total_pages, 3);
        walked.extend(ids(&answer));
    }
    assert_eq!(walked, [r5b, r5a, r3, r2, r1]);
    let past = app
        .list(item, pb::ReviewSort::StarH, Some(4), Some(2))
        .await
        .unwrap();
    assert!(past.data.is_empty());
    let info = past.page_info.unwrap();
    assert_eq!((info.total_elements, info.total_pages), (5, 3));
    // An item without reviews, an unknown item.
    let [bare] = app.items(&["빈 상품"]).await[..] else {
        panic!("one item")
    };
    let empty = app
        .list(bare, pb::ReviewSort::Newest, None, None)
        .await
        .unwrap();
    assert!(empty.data.is_empty());
    assert_eq!(empty.page_info.unwrap().total_pages, 0);
    let status = app
        .list(987_654, pb::ReviewSort::Newest, None, None)
        .await
        .unwrap_err();
    assert_error(status, Code::NotFound, "ITEM_NOT_FOUND");
    // My reviews take the same sorts.
    app.buyer(1, 77, other);
    let mine_other = app.create(1, other, 77, 1, "아연도").await.unwrap();
    let mine = app
        .reviews
        .list_my_reviews(authorized(
            pb::ListMyReviewsRequest {
                sort: pb::ReviewSort::StarH as i32,
                page: None,
                size: None,
            },
            &app.token(1),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&mine), [r3, mine_other.review_id]);
    app
}

async fn a_review_makes_cached_lists_stale(mut app: App) -> App {
    let [item] = app.items(&["캐시 확인"]).await[..] else {
        panic!("one item")
    };
    let search = pb::SearchItemsRequest {
        brand: Some("리뷰제약".into()),
        sort: pb::ItemSort::StarAvg as i32,
        ..Default::default()
    };
    let row = |page: pb::ItemPage| {
        let row = page.data.into_iter().next().expect("the item");
        (row.item_id, row.star_avg, row.review_count)
    };
    let before = app.catalog.search_items(search.clone()).await.unwrap();
    assert_eq!(row(before.into_inner()), (item, 0.0, 0));
    // Cached now: a second read is the same answer.
    let cached = app.catalog.search_items(search.clone()).await.unwrap();
    assert_eq!(row(cached.into_inner()), (item, 0.0, 0));

    let review = app.review_as_buyer(1, item, 4).await;
    let after = app.catalog.search_items(search.clone()).await.unwrap();
    assert_eq!(row(after.into_inner()), (item, 4.0, 1));
    app.update(1, review.review_id, Some(2), None)
        .await
        .unwrap();
    let edited = app.catalog.search_items(search.clone()).await.unwrap();
    assert_eq!(row(edited.into_inner()), (item, 2.0, 1));
    app.delete(1, review.review_id).await.unwrap();
    let deleted = app.catalog.search_items(search).await.unwrap();
    assert_eq!(row(deleted.into_inner()), (item, 0.0, 0));
    app
}

async fn failing_neighbours_answer_503_and_write_nothing(mut app: App) -> App {
    let [item] = app.items(&["장애 대비"]).await[..] else {
        panic!("one item")
    };
    app.buyer(1, 10, item);
    app.orders.failing.store(true, Ordering::SeqCst);
    let status = app
        .create(1, item, 10, 5, "주문 서비스 장애")
        .await
        .unwrap_err();
    assert_error(status, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    app.orders.failing.store(false, Ordering::SeqCst);
    app.users.failing.store(true, Ordering::SeqCst);
    let status = app
        .create(1, item, 10, 5, "회원 서비스 장애")
        .await
        .unwrap_err();
    assert_error(status, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert_eq!(app.stored(item).await, (0, 0, 0));
    let page = app
        .list(item, pb::ReviewSort::Newest, None, None)
        .await
        .unwrap();
    assert!(page.data.is_empty());
    // Both well again: the same review goes through.
    app.users.failing.store(false, Ordering::SeqCst);
    app.create(1, item, 10, 5, "복구").await.unwrap();
    assert_eq!(app.stored(item).await, (1, 5, 500));

    // A catalog whose edges are not configured answers 503 for a new review; reads still work.
    let unwired = app.running.replica(Options::default()).await;
    let mut reviews = ReviewServiceClient::new(unwired.channel.clone());
    let status = reviews
        .create_review(authorized(
            pb::CreateReviewRequest {
                item_id: item,
                order_id: 10,
                star: 3,
                content: "설정 없음".into(),
            },
            &unwired.token(1, Role::User),
        ))
        .await
        .unwrap_err();
    assert_error(status, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    let page = reviews
        .list_item_reviews(pb::ListItemReviewsRequest {
            item_id: item,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.data.len(), 1);
    unwired.stop().await;
    app
}
