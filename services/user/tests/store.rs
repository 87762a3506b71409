//! The user store against real databases: SQLite always, PostgreSQL / MySQL when
//! `PILLIVERY_TEST_POSTGRES_URL` / `PILLIVERY_TEST_MYSQL_URL` name a server (a schema or
//! database of its own per test, dropped afterwards).

use std::future::Future;

use chrono::{Duration, TimeZone, Utc};
use pillivery_platform::auth::Role;
use pillivery_platform::db::connect_and_migrate;
use pillivery_testkit::{Backend, TestDatabase};
use sea_orm_migration::MigratorTrait;
use user::domain::refresh::RefreshStatus;
use user::store::{
    Migrator, NewUser, ProfileUpdate, RotateOutcome, StoreError, UniqueField, UserStore,
};

async fn run<F, Fut>(backend: Option<Backend>, test: F)
where
    F: FnOnce(UserStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    let database = TestDatabase::fresh(&backend).await;
    let db = connect_and_migrate::<Migrator>(&database.config)
        .await
        .unwrap_or_else(|error| panic!("{} unusable: {error}", backend.name()));
    // Migrations are idempotent at start.
    Migrator::up(&db, None).await.unwrap();
    test(UserStore::new(db.clone())).await;
    let _ = db.close().await;
    database.remove().await;
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::run(Some(super::Backend::Sqlite), super::$name).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::run(super::Backend::postgres(), super::$name).await })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::run(super::Backend::mysql(), super::$name).await })*
        }
    };
}

on_every_backend!(
    users_read_back_field_for_field,
    each_unique_value_is_named_when_taken,
    a_concurrent_double_sign_up_creates_one_user,
    withdrawal_frees_the_unique_values_and_revokes_families,
    updates_keep_uniqueness,
    refresh_tokens_rotate_once_and_reuse_revokes_the_family,
    expired_and_unknown_refresh_tokens_are_invalid,
    family_revocation_respects_the_owner,
);

fn new_user(n: u32) -> NewUser {
    NewUser {
        email: format!("user{n}@example.com"),
        display_name: format!("이름{n}"),
        real_name: "김철수".into(),
        phone: format!("010-1234-{n:04}"),
        city: "서울".into(),
        detail_address: "강남구 1".into(),
        password_hash: Some("$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA".into()),
        social: false,
        role: Role::User,
    }
}

fn at(micros: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap() + Duration::microseconds(micros.into())
}

async fn users_read_back_field_for_field(store: UserStore) {
    let created = store.create_user(&new_user(1), at(123_456)).await.unwrap();
    assert_eq!(created.created_at, at(123_456));
    assert_eq!(
        store.get(created.user_id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store
            .find_active_by_email("user1@example.com")
            .await
            .unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store.find_active_by_email("x@example.com").await.unwrap(),
        None
    );
    let mut admin = new_user(2);
    admin.role = Role::Admin;
    admin.password_hash = None;
    admin.social = true;
    let admin = store.create_user(&admin, at(0)).await.unwrap();
    assert_eq!(
        (admin.role, admin.social, admin.password_hash),
        (Role::Admin, true, None)
    );
    assert_eq!(store.get(999_999).await.unwrap(), None);
}

async fn each_unique_value_is_named_when_taken(store: UserStore) {
    store.create_user(&new_user(1), at(0)).await.unwrap();
    type Edit = fn(&mut NewUser);
    let cases: [(Edit, UniqueField); 3] = [
        (|u| u.email = "user1@example.com".into(), UniqueField::Email),
        (
            |u| u.display_name = "이름1".into(),
            UniqueField::DisplayName,
        ),
        (|u| u.phone = "010-1234-0001".into(), UniqueField::Phone),
    ];
    for (edit, field) in cases {
        let mut user = new_user(2);
        edit(&mut user);
        match store.create_user(&user, at(0)).await {
            Err(StoreError::Taken(taken)) => assert_eq!(taken, field),
            other => panic!("{field:?}: {other:?}"),
        }
    }
    // An e-mail that looks like an index name does not confuse the mapping.
    let mut tricky = new_user(3);
    tricky.email = "active_phone@example.com".into();
    store.create_user(&tricky, at(0)).await.unwrap();
    let mut again = new_user(4);
    again.email = tricky.email.clone();
    assert!(matches!(
        store.create_user(&again, at(0)).await,
        Err(StoreError::Taken(UniqueField::Email))
    ));
}

async fn a_concurrent_double_sign_up_creates_one_user(store: UserStore) {
    for round in 0..5u32 {
        let mut first = new_user(10 + round * 2);
        let mut second = new_user(11 + round * 2);
        first.email = format!("same{round}@example.com");
        second.email = first.email.clone();
        let (a, b) = tokio::join!(
            tokio::spawn({
                let store = store.clone();
                async move { store.create_user(&first, at(0)).await }
            }),
            tokio::spawn({
                let store = store.clone();
                async move { store.create_user(&second, at(0)).await }
            }),
        );
        let results = [a.unwrap(), b.unwrap()];
        let created = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(created, 1, "{results:?}");
        assert!(
            results
                .iter()
                .any(|result| matches!(result, Err(StoreError::Taken(UniqueField::Email)))),
            "{results:?}"
        );
    }
}

async fn withdrawal_frees_the_unique_values_and_revokes_families(store: UserStore) {
    let user = store.create_user(&new_user(1), at(0)).await.unwrap();
    store
        .insert_refresh(
            user.user_id,
            "family-1",
            "hash-1",
            at(0) + Duration::days(14),
            at(0),
        )
        .await
        .unwrap();
    assert!(store.withdraw(user.user_id, at(5)).await.unwrap());
    assert!(!store.withdraw(user.user_id, at(6)).await.unwrap());
    let withdrawn = store.get(user.user_id).await.unwrap().unwrap();
    assert!(!withdrawn.is_active());
    assert_eq!(withdrawn.email, user.email);
    assert_eq!(store.find_active_by_email(&user.email).await.unwrap(), None);
    assert_eq!(
        store.refresh_token("hash-1").await.unwrap().unwrap().status,
        RefreshStatus::Revoked
    );
    let again = store.create_user(&new_user(1), at(10)).await.unwrap();
    assert_ne!(again.user_id, user.user_id);
    // Updates of a withdrawn account change nothing.
    let update = ProfileUpdate {
        city: Some("부산".into()),
        ..ProfileUpdate::default()
    };
    assert_eq!(
        store
            .update_profile(user.user_id, &update, at(20))
            .await
            .unwrap(),
        None
    );
}

async fn updates_keep_uniqueness(store: UserStore) {
    let first = store.create_user(&new_user(1), at(0)).await.unwrap();
    store.create_user(&new_user(2), at(0)).await.unwrap();
    let taken = ProfileUpdate {
        phone: Some("010-1234-0002".into()),
        ..ProfileUpdate::default()
    };
    assert!(matches!(
        store.update_profile(first.user_id, &taken, at(1)).await,
        Err(StoreError::Taken(UniqueField::Phone))
    ));
    let update = ProfileUpdate {
        display_name: Some("새이름".into()),
        phone: Some("010-9999-0001".into()),
        password_hash: Some("new-hash".into()),
        ..ProfileUpdate::default()
    };
    let updated = store
        .update_profile(first.user_id, &update, at(7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.display_name, "새이름");
    assert_eq!(updated.phone, "010-9999-0001");
    assert_eq!(updated.password_hash.as_deref(), Some("new-hash"));
    assert_eq!(updated.updated_at, at(7));
    assert_eq!(updated.created_at, at(0));
    // The old values are free.
    let mut reuse = new_user(3);
    reuse.display_name = "이름1".into();
    reuse.phone = "010-1234-0001".into();
    store.create_user(&reuse, at(8)).await.unwrap();
}

async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family(store: UserStore) {
    let user = store.create_user(&new_user(1), at(0)).await.unwrap();
    let now = Utc::now();
    let expires = now + Duration::days(14);
    store
        .insert_refresh(user.user_id, "family-a", "a1", expires, now)
        .await
        .unwrap();
    store
        .insert_refresh(user.user_id, "family-b", "b1", expires, now)
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_refresh("a1", "a2", expires, now)
            .await
            .unwrap(),
        RotateOutcome::Rotated {
            user_id: user.user_id,
            family_id: "family-a".into()
        }
    );
    assert_eq!(
        store.refresh_token("a1").await.unwrap().unwrap().status,
        RefreshStatus::Rotated
    );
    assert_eq!(
        store.refresh_token("a2").await.unwrap().unwrap().status,
        RefreshStatus::Active
    );
    assert_eq!(
        store
            .rotate_refresh("a1", "a3", expires, now)
            .await
            .unwrap(),
        RotateOutcome::Reused {
            user_id: user.user_id,
            family_id: "family-a".into()
        }
    );
    assert_eq!(store.refresh_token("a3").await.unwrap(), None);
    assert_eq!(
        store.refresh_token("a2").await.unwrap().unwrap().status,
        RefreshStatus::Revoked
    );
    assert_eq!(
        store
            .rotate_refresh("a2", "a4", expires, now)
            .await
            .unwrap(),
        RotateOutcome::Invalid
    );
    // The other family lives on.
    assert!(matches!(
        store
            .rotate_refresh("b1", "b2", expires, now)
            .await
            .unwrap(),
        RotateOutcome::Rotated { .. }
    ));

    // Two refreshes racing with one token: one rotates, the other is reuse.
    let (x, y) = tokio::join!(
        tokio::spawn({
            let store = store.clone();
            async move { store.rotate_refresh("b2", "b3", expires, now).await }
        }),
        tokio::spawn({
            let store = store.clone();
            async move { store.rotate_refresh("b2", "b4", expires, now).await }
        }),
    );
    let outcomes = [x.unwrap().unwrap(), y.unwrap().unwrap()];
    let rotated = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, RotateOutcome::Rotated { .. }))
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
}

async fn expired_and_unknown_refresh_tokens_are_invalid(store: UserStore) {
    let user = store.create_user(&new_user(1), at(0)).await.unwrap();
    let now = Utc::now();
    store
        .insert_refresh(
            user.user_id,
            "family",
            "old",
            now - Duration::seconds(1),
            now,
        )
        .await
        .unwrap();
    let later = now + Duration::days(1);
    assert_eq!(
        store
            .rotate_refresh("old", "new", later, now)
            .await
            .unwrap(),
        RotateOutcome::Invalid
    );
    assert_eq!(
        store
            .rotate_refresh("nope", "new", later, now)
            .await
            .unwrap(),
        RotateOutcome::Invalid
    );
    assert_eq!(store.refresh_token("new").await.unwrap(), None);
}

async fn family_revocation_respects_the_owner(store: UserStore) {
    let owner = store.create_user(&new_user(1), at(0)).await.unwrap();
    let stranger = store.create_user(&new_user(2), at(0)).await.unwrap();
    let now = Utc::now();
    let expires = now + Duration::days(1);
    for (hash, family) in [("f1", "one"), ("f2", "two")] {
        store
            .insert_refresh(owner.user_id, family, hash, expires, now)
            .await
            .unwrap();
    }
    assert!(
        !store
            .revoke_family_of("f1", stranger.user_id)
            .await
            .unwrap()
    );
    assert_eq!(
        store.refresh_token("f1").await.unwrap().unwrap().status,
        RefreshStatus::Active
    );
    assert!(store.revoke_family_of("f1", owner.user_id).await.unwrap());
    assert_eq!(
        store.refresh_token("f1").await.unwrap().unwrap().status,
        RefreshStatus::Revoked
    );
    assert_eq!(
        store.refresh_token("f2").await.unwrap().unwrap().status,
        RefreshStatus::Active
    );
    assert_eq!(store.revoke_all_families(owner.user_id).await.unwrap(), 1);
    assert_eq!(
        store.refresh_token("f2").await.unwrap().unwrap().status,
        RefreshStatus::Revoked
    );
}
