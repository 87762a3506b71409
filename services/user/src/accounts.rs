//! The user service's use cases — sign-up, login, refresh, logout, profile, withdrawal — over
//! the store, the password hasher, the token issuer and the key-value store. `grpc.rs` maps
//! the wire to these calls and back; the rules themselves are in `domain`.
//!
//! **Who is calling.** Only a verified access token says so ([`Accounts::authenticate`]): its
//! signature, `exp`, `iss` and `aud` (platform's verifier), then that its `jti` is not
//! blacklisted and that the account is still active. A withdrawn account's tokens therefore stop
//! working here at once, and at the gateway too: withdrawal sets [`withdrawn_key`] for one
//! access-token lifetime, and the gateway refuses every token of that user while it exists.
//!
//! **Logout.** With a refresh token in the body, its family is revoked (only if it is the
//! caller's: someone else's token changes nothing). Without one, *every* active family of the
//! caller is revoked: access tokens carry no session id, so "the access token's session" cannot
//! be told apart from the caller's other sessions — logging out everywhere is the safe reading.
//! Either way the access token's `jti` is blacklisted under [`blacklist_key`] until it expires.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pillivery_platform::auth::{Caller, Role, TokenIssuer, TokenVerifier, VerificationKey};
use pillivery_platform::kv::KeyValueStore;

use crate::domain::account::{current_password_wrong, normalize_email};
use crate::domain::refresh::{RefreshToken, hash_refresh_token};
use crate::domain::{SignUpInput, UpdateInput, validate_sign_up, validate_update};
use crate::error::UserError;
use crate::password::PasswordHasher;
use crate::store::{NewUser, ProfileUpdate, RotateOutcome, UserRecord, UserStore};

/// The key-value names shared with the gateway (`token-blacklist:<jti>`, `user-withdrawn:<id>`).
pub use pillivery_platform::auth::{TOKEN_BLACKLIST_PREFIX, blacklist_key, withdrawn_key};

const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// A login's or refresh's answer.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// The access token's lifetime in seconds.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Everything the use cases need; shared by both gRPC services.
pub struct Accounts {
    pub(crate) store: UserStore,
    hasher: PasswordHasher,
    issuer: TokenIssuer,
    verifier: TokenVerifier,
    pub(crate) kv: KeyValueStore,
    refresh_ttl: chrono::Duration,
    login_attempts_per_minute: u32,
}

impl Accounts {
    pub fn new(
        store: UserStore,
        hasher: PasswordHasher,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        kv: KeyValueStore,
        refresh_ttl_seconds: u64,
        login_attempts_per_minute: u32,
    ) -> Accounts {
        Accounts {
            store,
            hasher,
            issuer,
            verifier,
            kv,
            refresh_ttl: chrono::Duration::seconds(
                i64::try_from(refresh_ttl_seconds).unwrap_or(i64::MAX / 1_000_000),
            ),
            login_attempts_per_minute,
        }
    }

    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    pub fn verification_keys(&self) -> &[VerificationKey] {
        self.verifier.keys()
    }

    pub async fn sign_up(&self, input: SignUpInput) -> Result<UserRecord, UserError> {
        let account = validate_sign_up(input)?;
        let password_hash = self.hasher.hash(account.password.clone()).await?;
        let user = self
            .store
            .create_user(
                &NewUser {
                    email: account.email,
                    display_name: account.display_name,
                    real_name: account.real_name,
                    phone: account.phone,
                    city: account.city,
                    detail_address: account.detail_address,
                    password_hash: Some(password_hash),
                    social: false,
                    role: Role::User,
                },
                Utc::now(),
            )
            .await
            .map_err(taken_or_storage)?;
        tracing::info!(user_id = user.user_id, "signed up");
        Ok(user)
    }

    /// Logs in; the three failures (unknown e-mail, wrong password, withdrawn) are one error
    /// after the same work, and both limits are counted before any password is checked.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client_ip: Option<&str>,
    ) -> Result<TokenPair, UserError> {
        let email = normalize_email(email);
        let mut allowed = true;
        if let Some(ip) = client_ip.filter(|ip| !ip.is_empty()) {
            allowed &= self
                .within_login_limit(&format!("login-attempts:ip:{ip}"))
                .await;
        }
        allowed &= self
            .within_login_limit(&format!("login-attempts:email:{email}"))
            .await;
        if !allowed {
            return Err(UserError::TooManyLoginAttempts);
        }
        let user = self.store.find_active_by_email(&email).await?;
        let hash = user.as_ref().and_then(|user| user.password_hash.clone());
        let matches = self.hasher.verify(password, hash).await?;
        match user {
            Some(user) if matches && user.is_active() => self.start_session(&user).await,
            _ => Err(UserError::BadCredentials),
        }
    }

    /// Counts one attempt; an unreachable key-value store lets the attempt through (and is
    /// logged): locking everyone out because Redis blinked would be worse.
    async fn within_login_limit(&self, key: &str) -> bool {
        match self
            .kv
            .rate_limit(key, self.login_attempts_per_minute, LOGIN_WINDOW)
            .await
        {
            Ok(decision) => decision.allowed,
            Err(error) => {
                tracing::warn!(%error, "login rate limit unavailable; allowing the attempt");
                true
            }
        }
    }

    /// A new refresh family and access token for `user` (login, OAuth login).
    pub(crate) async fn start_session(&self, user: &UserRecord) -> Result<TokenPair, UserError> {
        let now = Utc::now();
        let family_id = uuid::Uuid::new_v4().to_string();
        let refresh = RefreshToken::generate();
        self.store
            .insert_refresh(
                user.user_id,
                &family_id,
                &refresh.hash,
                now + self.refresh_ttl,
                now,
            )
            .await?;
        tracing::info!(user_id = user.user_id, "logged in");
        Ok(self.pair(user, refresh, now))
    }

    fn pair(&self, user: &UserRecord, refresh: RefreshToken, now: DateTime<Utc>) -> TokenPair {
        let access = self.issuer.issue(user.user_id, user.role, now);
        TokenPair {
            access_token: access.token,
            refresh_token: refresh.secret,
            expires_in: access.expires_in_seconds,
        }
    }

    pub async fn refresh(&self, presented: &str) -> Result<TokenPair, UserError> {
        if presented.is_empty() {
            return Err(UserError::InvalidRefreshToken);
        }
        let now = Utc::now();
        let successor = RefreshToken::generate();
        let outcome = self
            .store
            .rotate_refresh(
                &hash_refresh_token(presented),
                &successor.hash,
                now + self.refresh_ttl,
                now,
            )
            .await?;
        match outcome {
            RotateOutcome::Rotated { user_id, family_id } => {
                match self.store.get(user_id).await? {
                    Some(user) if user.is_active() => Ok(self.pair(&user, successor, now)),
                    _ => {
                        // Withdrawal revokes families in the same transaction; this is a
                        // race with it. Do not leave the successor usable.
                        self.store.revoke_all_families(user_id).await?;
                        tracing::info!(user_id, family_id, "refresh for an inactive account");
                        Err(UserError::InvalidRefreshToken)
                    }
                }
            }
            RotateOutcome::Reused { user_id, family_id } => {
                tracing::warn!(user_id, family_id, "refresh token reused; family revoked");
                Err(UserError::RefreshTokenReused)
            }
            RotateOutcome::Invalid => Err(UserError::InvalidRefreshToken),
        }
    }

    /// The caller of a request whose token platform's verifier accepted: refused when the
    /// token is blacklisted or the account is no longer active.
    pub async fn authenticate(&self, caller: &Caller) -> Result<UserRecord, UserError> {
        if self.is_blacklisted(&caller.token_id).await? {
            return Err(UserError::Unauthenticated("INVALID_TOKEN"));
        }
        match self.store.get(caller.user_id).await? {
            Some(user) if user.is_active() => Ok(user),
            _ => Err(UserError::Unauthenticated("INVALID_TOKEN")),
        }
    }

    async fn is_blacklisted(&self, token_id: &str) -> Result<bool, UserError> {
        Ok(self.kv.get(&blacklist_key(token_id)).await?.is_some())
    }

    /// Blacklists the caller's access token until it expires.
    async fn blacklist(&self, caller: &Caller) -> Result<(), UserError> {
        let remaining = (caller.expires_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        if remaining.is_zero() {
            return Ok(());
        }
        // A few extra seconds cover the verifiers' leeway for `exp`.
        let ttl = remaining + Duration::from_secs(self.verifier.config().leeway_seconds + 1);
        self.kv
            .set(&blacklist_key(&caller.token_id), b"1", Some(ttl))
            .await?;
        Ok(())
    }

    /// Logout (see the module documentation). Idempotent: logging out with an already
    /// blacklisted token, or a token already revoked, succeeds.
    pub async fn logout(&self, caller: &Caller, refresh: Option<&str>) -> Result<(), UserError> {
        match refresh.filter(|token| !token.is_empty()) {
            Some(token) => {
                let found = self
                    .store
                    .revoke_family_of(&hash_refresh_token(token), caller.user_id)
                    .await?;
                if !found {
                    tracing::info!(
                        user_id = caller.user_id,
                        "logout with a refresh token that is not the caller's"
                    );
                }
            }
            None => {
                self.store.revoke_all_families(caller.user_id).await?;
            }
        }
        self.blacklist(caller).await?;
        tracing::info!(user_id = caller.user_id, "logged out");
        Ok(())
    }

    pub async fn get_me(&self, caller: &Caller) -> Result<UserRecord, UserError> {
        self.authenticate(caller).await
    }

    pub async fn update_me(
        &self,
        caller: &Caller,
        input: UpdateInput,
    ) -> Result<UserRecord, UserError> {
        let user = self.authenticate(caller).await?;
        let current_password = input
            .current_password
            .clone()
            .filter(|current| !current.is_empty());
        let wants_new_password = input.password.is_some();
        let (changes, mut violations) = match validate_update(input) {
            Ok(changes) => (Some(changes), Vec::new()),
            Err(violations) => (None, violations),
        };
        if wants_new_password
            && let Some(current) = current_password
            && !self
                .hasher
                .verify(current, user.password_hash.clone())
                .await?
        {
            violations.push(current_password_wrong());
        }
        let changes = match changes {
            Some(changes) if violations.is_empty() => changes,
            _ => return Err(UserError::Invalid(violations)),
        };
        if changes.is_empty() {
            return Ok(user);
        }
        let password_hash = match changes.new_password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        let update = ProfileUpdate {
            display_name: changes.display_name,
            real_name: changes.real_name,
            phone: changes.phone,
            city: changes.city,
            detail_address: changes.detail_address,
            password_hash,
        };
        self.store
            .update_profile(user.user_id, &update, Utc::now())
            .await
            .map_err(taken_or_storage)?
            .ok_or(UserError::Unauthenticated("INVALID_TOKEN"))
    }

    pub async fn withdraw(&self, caller: &Caller) -> Result<(), UserError> {
        let user = self.authenticate(caller).await?;
        if self.store.withdraw(user.user_id, Utc::now()).await? {
            on_user_withdrawn(user.user_id);
        }
        // Every token of the account issued so far lives at most one access-token lifetime;
        // the gateway refuses them all while this key exists.
        let config = self.verifier.config();
        let lifetime = Duration::from_secs(config.access_ttl_seconds + config.leeway_seconds + 1);
        self.kv
            .set(&withdrawn_key(user.user_id), b"1", Some(lifetime))
            .await?;
        self.blacklist(caller).await
    }

    /// An administrator reads any account. The role is checked again here (the gateway
    /// checked the token's), against both the token and the stored account.
    pub async fn get_user(&self, caller: &Caller, user_id: i64) -> Result<UserRecord, UserError> {
        let admin = self.authenticate(caller).await?;
        if !caller.is_admin() || admin.role != Role::Admin {
            return Err(UserError::Forbidden);
        }
        self.store
            .get(user_id)
            .await?
            .ok_or(UserError::UserNotFound(user_id))
    }
}

/// Called once when an account has been withdrawn. The `UserWithdrawn` event is already in the
/// outbox, written in the withdrawal's transaction; the order service consumes it to cancel the
/// user's active subscriptions.
pub fn on_user_withdrawn(user_id: i64) {
    tracing::info!(user_id, "user withdrawn");
}

pub(crate) fn taken_or_storage(error: crate::store::StoreError) -> UserError {
    match error {
        crate::store::StoreError::Taken(field) => UserError::Taken(field),
        crate::store::StoreError::IdentityLinked => UserError::OAuthIdentityLinked,
        other => UserError::Storage(other),
    }
}

/// Why [`ensure_admin`] could not make sure of the administrator.
#[derive(Debug, thiserror::Error)]
pub enum EnsureAdminError {
    #[error("admin e-mail: {0}")]
    InvalidEmail(String),
    #[error("admin password: {0}")]
    InvalidPassword(String),
    #[error(transparent)]
    Storage(#[from] crate::store::StoreError),
    #[error(transparent)]
    Hashing(#[from] crate::password::HashError),
    #[error("no free display name or phone number for the admin account")]
    NoFreeProfile,
}

/// Creates an ADMIN account with `email` and `password` when no active account has that
/// e-mail; answers whether it created one. An existing account is left exactly as it is (its
/// password is not reset, its role not raised: a warning says so when it is not an admin).
///
/// The admin's profile is placeholder data: display name `관리자` and phone `010-0000-0000`,
/// with a random suffix when a user already holds them.
pub async fn ensure_admin(
    store: &UserStore,
    hasher: &PasswordHasher,
    email: &str,
    password: &str,
) -> Result<bool, EnsureAdminError> {
    let email = crate::domain::account::validate_email(email)
        .map_err(|reason| EnsureAdminError::InvalidEmail(reason.en.into_owned()))?;
    crate::domain::account::validate_password(password)
        .map_err(|reason| EnsureAdminError::InvalidPassword(reason.en.into_owned()))?;
    if let Some(existing) = store.find_active_by_email(&email).await? {
        if existing.role != Role::Admin {
            tracing::warn!(
                user_id = existing.user_id,
                "the configured admin e-mail belongs to a non-admin account; left unchanged"
            );
        }
        return Ok(false);
    }
    let password_hash = hasher.hash(password.to_owned()).await?;
    for attempt in 0..8u32 {
        let (display_name, phone) = if attempt == 0 {
            ("관리자".to_owned(), "010-0000-0000".to_owned())
        } else {
            let suffix: u16 = rand::random_range(0..10_000);
            (
                format!("관리자{suffix:04}"),
                format!("010-0000-{suffix:04}"),
            )
        };
        let created = store
            .create_user(
                &NewUser {
                    email: email.clone(),
                    display_name,
                    real_name: "관리자".to_owned(),
                    phone,
                    city: "-".to_owned(),
                    detail_address: "-".to_owned(),
                    password_hash: Some(password_hash.clone()),
                    social: false,
                    role: Role::Admin,
                },
                Utc::now(),
            )
            .await;
        match created {
            Ok(admin) => {
                tracing::info!(user_id = admin.user_id, "admin account created");
                return Ok(true);
            }
            // Another replica created it at the same moment.
            Err(crate::store::StoreError::Taken(crate::store::UniqueField::Email)) => {
                return Ok(false);
            }
            Err(crate::store::StoreError::Taken(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(EnsureAdminError::NoFreeProfile)
}
