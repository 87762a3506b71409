//! The user service's storage: accounts and refresh-token families in its own database, which
//! no other service reads.
//!
//! Every query of the service is here. The same code runs on SQLite, PostgreSQL and
//! MySQL/MariaDB: queries use SeaORM's builder, and comparisons of instants are made in Rust on
//! rows read back, never in SQL, so the three backends' different timestamp encodings never
//! matter to a decision. Uniqueness among active accounts is the database's job (see
//! [`migration`]); a violated index comes back as [`StoreError::Taken`].

mod entity;
mod error;
pub mod migration;

use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use pillivery_platform::auth::Role;
use pillivery_platform::events::{NewEvent, RelayWaker, outbox};
use prost::Message;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait,
    DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use crate::domain::refresh::{RefreshStatus, RefreshVerdict, judge_refresh};
use entity::{oauth_identity, refresh_token, user};

pub use error::{StoreError, UniqueField};
pub use migration::Migrator;

/// Whether an account can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Withdrawn,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "ACTIVE",
            AccountStatus::Withdrawn => "WITHDRAWN",
        }
    }

    fn parse(value: &str) -> Option<AccountStatus> {
        match value {
            "ACTIVE" => Some(AccountStatus::Active),
            "WITHDRAWN" => Some(AccountStatus::Withdrawn),
            _ => None,
        }
    }
}

/// An account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: i64,
    pub email: String,
    pub display_name: String,
    pub real_name: String,
    pub phone: String,
    pub city: String,
    pub detail_address: String,
    /// Argon2id PHC string; `None` for OAuth accounts.
    pub password_hash: Option<String>,
    pub social: bool,
    pub role: Role,
    pub status: AccountStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    pub fn is_active(&self) -> bool {
        self.status == AccountStatus::Active
    }
}

/// An account to create; values already validated and normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub real_name: String,
    pub phone: String,
    pub city: String,
    pub detail_address: String,
    pub password_hash: Option<String>,
    pub social: bool,
    pub role: Role,
}

/// Changes to an active account; `None` leaves a column as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub display_name: Option<String>,
    pub real_name: Option<String>,
    pub phone: Option<String>,
    pub city: Option<String>,
    pub detail_address: Option<String>,
    pub password_hash: Option<String>,
}

/// A refresh token row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRecord {
    pub family_id: String,
    pub user_id: i64,
    pub status: RefreshStatus,
    pub expires_at: DateTime<Utc>,
}

/// What a presented refresh token led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was spent and its successor stored in the same family.
    Rotated { user_id: i64, family_id: String },
    /// A spent token came back: its family is revoked now.
    Reused { user_id: i64, family_id: String },
    /// Unknown, expired or revoked: nothing changed.
    Invalid,
}

/// The user service's tables behind one connection pool.
#[derive(Clone, Debug)]
pub struct UserStore {
    db: DatabaseConnection,
    /// Wakes the outbox relay after a commit that wrote an event; without one the relay finds
    /// the event on its next poll.
    relay: Option<RelayWaker>,
}

/// The stream this service's events are published on.
pub const EVENT_STREAM: &str = "user";

/// The precision instants are stored and compared at.
fn micros(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant.trunc_subsecs(6)
}

impl UserStore {
    /// A store over an already migrated database (see [`Migrator`]).
    pub fn new(db: DatabaseConnection) -> UserStore {
        UserStore { db, relay: None }
    }

    /// The same store, waking `relay` whenever it commits an event.
    pub fn with_relay(self, relay: RelayWaker) -> UserStore {
        UserStore {
            relay: Some(relay),
            ..self
        }
    }

    /// Creates an account; a value another active account holds → [`StoreError::Taken`].
    pub async fn create_user(
        &self,
        new: &NewUser,
        now: DateTime<Utc>,
    ) -> Result<UserRecord, StoreError> {
        insert_user(&self.db, new, now).await
    }

    /// Creates an account and links the OAuth2 identity `(provider, subject)` to it, in one
    /// transaction: a taken value → [`StoreError::Taken`], an identity linked meanwhile →
    /// [`StoreError::IdentityLinked`], and then neither row exists.
    pub async fn create_linked_user(
        &self,
        new: &NewUser,
        provider: &str,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<UserRecord, StoreError> {
        let transaction = self.db.begin().await?;
        let created = insert_user(&transaction, new, now).await?;
        oauth_identity::Entity::insert(oauth_identity::ActiveModel {
            id: NotSet,
            provider: Set(provider.to_owned()),
            subject: Set(subject.to_owned()),
            user_id: Set(created.user_id),
            created_at: Set(micros(now)),
        })
        .exec(&transaction)
        .await
        .map_err(StoreError::from_write)?;
        transaction.commit().await?;
        Ok(created)
    }

    /// The account the OAuth2 identity `(provider, subject)` is linked to, if any.
    pub async fn find_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(oauth_identity::Entity::find()
            .filter(oauth_identity::Column::Provider.eq(provider))
            .filter(oauth_identity::Column::Subject.eq(subject))
            .one(&self.db)
            .await?
            .map(|row| row.user_id))
    }

    /// Removes the link of `(provider, subject)` (a stale link to an account that is no longer
    /// active); absent links are fine.
    pub async fn unlink_identity(&self, provider: &str, subject: &str) -> Result<(), StoreError> {
        oauth_identity::Entity::delete_many()
            .filter(oauth_identity::Column::Provider.eq(provider))
            .filter(oauth_identity::Column::Subject.eq(subject))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Any account by id, withdrawn ones included.
    pub async fn get(&self, user_id: i64) -> Result<Option<UserRecord>, StoreError> {
        user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .map(record)
            .transpose()
    }

    /// `(user id, display name)` of the active accounts among `user_ids`; unknown and withdrawn
    /// accounts are left out. One query; the caller bounds how many ids it sends.
    pub async fn active_display_names(
        &self,
        user_ids: &[i64],
    ) -> Result<Vec<(i64, String)>, StoreError> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(user::Entity::find()
            .select_only()
            .column(user::Column::Id)
            .column(user::Column::DisplayName)
            .filter(user::Column::Id.is_in(user_ids.iter().copied()))
            .filter(user::Column::Status.eq(AccountStatus::Active.as_str()))
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// The active account with this (normalised) e-mail, if any.
    pub async fn find_active_by_email(
        &self,
        email: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        user::Entity::find()
            .filter(user::Column::ActiveEmail.eq(email))
            .one(&self.db)
            .await?
            .map(record)
            .transpose()
    }

    /// Applies `update` to an active account and answers it as stored; `None` when the account
    /// does not exist or is withdrawn.
    pub async fn update_profile(
        &self,
        user_id: i64,
        update: &ProfileUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut statement = user::Entity::update_many()
            .col_expr(user::Column::UpdatedAt, Expr::value(micros(now)))
            .filter(user::Column::Id.eq(user_id))
            .filter(user::Column::Status.eq(AccountStatus::Active.as_str()));
        if let Some(display_name) = &update.display_name {
            statement = statement
                .col_expr(user::Column::DisplayName, Expr::value(display_name.clone()))
                .col_expr(
                    user::Column::ActiveDisplayName,
                    Expr::value(display_name.clone()),
                );
        }
        if let Some(phone) = &update.phone {
            statement = statement
                .col_expr(user::Column::Phone, Expr::value(phone.clone()))
                .col_expr(user::Column::ActivePhone, Expr::value(phone.clone()));
        }
        if let Some(real_name) = &update.real_name {
            statement = statement.col_expr(user::Column::RealName, Expr::value(real_name.clone()));
        }
        if let Some(city) = &update.city {
            statement = statement.col_expr(user::Column::City, Expr::value(city.clone()));
        }
        if let Some(detail_address) = &update.detail_address {
            statement = statement.col_expr(
                user::Column::DetailAddress,
                Expr::value(detail_address.clone()),
            );
        }
        if let Some(password_hash) = &update.password_hash {
            statement = statement.col_expr(
                user::Column::PasswordHash,
                Expr::value(Some(password_hash.clone())),
            );
        }
        let result = statement
            .exec(&self.db)
            .await
            .map_err(StoreError::from_write)?;
        if result.rows_affected == 0 {
            return Ok(None);
        }
        self.get(user_id).await
    }

    /// Withdraws an active account: WITHDRAWN, its unique values freed for others, every
    /// refresh family revoked, its OAuth2 identities unlinked — in one transaction. False when it was not active.
    pub async fn withdraw(&self, user_id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let now = micros(now);
        let transaction = self.db.begin().await?;
        let result = user::Entity::update_many()
            .col_expr(
                user::Column::Status,
                Expr::value(AccountStatus::Withdrawn.as_str()),
            )
            .col_expr(
                user::Column::ActiveEmail,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                user::Column::ActiveDisplayName,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                user::Column::ActivePhone,
                Expr::value(Option::<String>::None),
            )
            .col_expr(user::Column::WithdrawnAt, Expr::value(Some(now)))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(user_id))
            .filter(user::Column::Status.eq(AccountStatus::Active.as_str()))
            .exec(&transaction)
            .await?;
        if result.rows_affected == 0 {
            transaction.rollback().await?;
            return Ok(false);
        }
        revoke_where(&transaction, refresh_token::Column::UserId.eq(user_id)).await?;
        // Its OAuth2 identities are freed like its e-mail: that provider account may sign up
        // again as a new account.
        oauth_identity::Entity::delete_many()
            .filter(oauth_identity::Column::UserId.eq(user_id))
            .exec(&transaction)
            .await?;
        // In the withdrawal's own transaction: the order service cancels the user's active
        // subscriptions when it sees this, and it can never see a withdrawal that did not happen
        // or miss one that did.
        let event = pillivery_proto::events::UserWithdrawn {
            user_id,
            withdrawn_at: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: now.timestamp_subsec_nanos() as i32,
            }),
        };
        outbox::append(
            &transaction,
            EVENT_STREAM,
            NewEvent::new("UserWithdrawn", user_id.to_string(), event.encode_to_vec()),
        )
        .await?;
        transaction.commit().await?;
        if let Some(relay) = &self.relay {
            relay.wake();
        }
        Ok(true)
    }

    /// Stores the hash of a newly issued refresh token (the first of a family at login).
    pub async fn insert_refresh(
        &self,
        user_id: i64,
        family_id: &str,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        insert_refresh(&self.db, user_id, family_id, token_hash, expires_at, now).await
    }

    /// Spends the presented token and stores `successor_hash` in its family; or, for a token
    /// spent before, revokes the family. Two refreshes racing with one token: the loser sees it
    /// spent and is treated as reuse — the conservative reading, since a legitimate client
    /// never sends one token twice.
    pub async fn rotate_refresh(
        &self,
        presented_hash: &str,
        successor_hash: &str,
        successor_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, StoreError> {
        // The conditional update comes first so every backend takes its write lock at the start
        // (SQLite cannot upgrade a read transaction to a write one under contention) and two
        // refreshes with one token are serialised by the database: exactly one sees it ACTIVE.
        let transaction = self.db.begin().await?;
        let spent = refresh_token::Entity::update_many()
            .col_expr(
                refresh_token::Column::Status,
                Expr::value(RefreshStatus::Rotated.as_str()),
            )
            .filter(refresh_token::Column::TokenHash.eq(presented_hash))
            .filter(refresh_token::Column::Status.eq(RefreshStatus::Active.as_str()))
            .exec(&transaction)
            .await?
            .rows_affected;
        let Some(row) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(presented_hash))
            .one(&transaction)
            .await?
        else {
            transaction.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        };
        let stored = refresh_record(&row)?;
        // What the token was before this transaction touched it.
        let status_before = if spent == 1 {
            RefreshStatus::Active
        } else {
            stored.status
        };
        let outcome = match judge_refresh(status_before, stored.expires_at, now) {
            RefreshVerdict::Rotate => {
                insert_refresh(
                    &transaction,
                    row.user_id,
                    &row.family_id,
                    successor_hash,
                    successor_expires_at,
                    now,
                )
                .await?;
                RotateOutcome::Rotated {
                    user_id: row.user_id,
                    family_id: row.family_id,
                }
            }
            RefreshVerdict::Reused => {
                revoke_where(
                    &transaction,
                    refresh_token::Column::FamilyId.eq(row.family_id.clone()),
                )
                .await?;
                RotateOutcome::Reused {
                    user_id: row.user_id,
                    family_id: row.family_id,
                }
            }
            // Expired or revoked: undo the update (an expired ACTIVE token stays as it was).
            RefreshVerdict::Invalid => {
                transaction.rollback().await?;
                return Ok(RotateOutcome::Invalid);
            }
        };
        transaction.commit().await?;
        Ok(outcome)
    }

    /// The stored state of a refresh token, by its hash.
    pub async fn refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await?
            .as_ref()
            .map(refresh_record)
            .transpose()
    }

    /// Revokes the family of the token with `token_hash` if it belongs to `user_id`; answers
    /// whether such a token exists (a stranger's or unknown token changes nothing).
    pub async fn revoke_family_of(
        &self,
        token_hash: &str,
        user_id: i64,
    ) -> Result<bool, StoreError> {
        let Some(row) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .filter(refresh_token::Column::UserId.eq(user_id))
            .one(&self.db)
            .await?
        else {
            return Ok(false);
        };
        revoke_where(&self.db, refresh_token::Column::FamilyId.eq(row.family_id)).await?;
        Ok(true)
    }

    /// Revokes every active family of `user_id`; answers how many tokens were revoked.
    pub async fn revoke_all_families(&self, user_id: i64) -> Result<u64, StoreError> {
        revoke_where(&self.db, refresh_token::Column::UserId.eq(user_id)).await
    }
}

async fn insert_user(
    connection: &impl ConnectionTrait,
    new: &NewUser,
    now: DateTime<Utc>,
) -> Result<UserRecord, StoreError> {
    let now = micros(now);
    let model = user::ActiveModel {
        id: NotSet,
        email: Set(new.email.clone()),
        display_name: Set(new.display_name.clone()),
        real_name: Set(new.real_name.clone()),
        phone: Set(new.phone.clone()),
        city: Set(new.city.clone()),
        detail_address: Set(new.detail_address.clone()),
        password_hash: Set(new.password_hash.clone()),
        social: Set(new.social),
        role: Set(new.role.as_str().to_owned()),
        status: Set(AccountStatus::Active.as_str().to_owned()),
        active_email: Set(Some(new.email.clone())),
        active_display_name: Set(Some(new.display_name.clone())),
        active_phone: Set(Some(new.phone.clone())),
        created_at: Set(now),
        updated_at: Set(now),
        withdrawn_at: Set(None),
    }
    .insert(connection)
    .await
    .map_err(StoreError::from_write)?;
    record(model)
}

async fn insert_refresh(
    connection: &impl ConnectionTrait,
    user_id: i64,
    family_id: &str,
    token_hash: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: NotSet,
        token_hash: Set(token_hash.to_owned()),
        family_id: Set(family_id.to_owned()),
        user_id: Set(user_id),
        status: Set(RefreshStatus::Active.as_str().to_owned()),
        expires_at: Set(micros(expires_at)),
        created_at: Set(micros(now)),
    })
    .exec(connection)
    .await?;
    Ok(())
}

/// ACTIVE → REVOKED for the tokens matching `condition`. ROTATED tokens keep their status, so
/// presenting one later is still recognised as reuse.
async fn revoke_where(
    connection: &impl ConnectionTrait,
    condition: impl sea_orm::sea_query::IntoCondition,
) -> Result<u64, StoreError> {
    let result = refresh_token::Entity::update_many()
        .col_expr(
            refresh_token::Column::Status,
            Expr::value(RefreshStatus::Revoked.as_str()),
        )
        .filter(condition)
        .filter(refresh_token::Column::Status.eq(RefreshStatus::Active.as_str()))
        .exec(connection)
        .await?;
    Ok(result.rows_affected)
}

fn record(model: user::Model) -> Result<UserRecord, StoreError> {
    let corrupt = |column: &'static str, value: &str| StoreError::Corrupt {
        id: model.id,
        column,
        value: value.to_owned(),
    };
    let role = Role::from_str(&model.role).map_err(|_| corrupt("role", &model.role))?;
    let status =
        AccountStatus::parse(&model.status).ok_or_else(|| corrupt("status", &model.status))?;
    Ok(UserRecord {
        user_id: model.id,
        email: model.email,
        display_name: model.display_name,
        real_name: model.real_name,
        phone: model.phone,
        city: model.city,
        detail_address: model.detail_address,
        password_hash: model.password_hash,
        social: model.social,
        role,
        status,
        created_at: model.created_at,
        updated_at: model.updated_at,
    })
}

fn refresh_record(model: &refresh_token::Model) -> Result<RefreshRecord, StoreError> {
    let status = RefreshStatus::parse(&model.status).ok_or_else(|| StoreError::Corrupt {
        id: model.id,
        column: "refresh_tokens.status",
        value: model.status.clone(),
    })?;
    Ok(RefreshRecord {
        family_id: model.family_id.clone(),
        user_id: model.user_id,
        status,
        expires_at: model.expires_at,
    })
}
