//! What can go wrong in the store: a value already taken by another active account, a row
//! changed outside this service, or the database failing — and which of those failures are
//! the database being unreachable (503, retryable) rather than a bug (500).

use sea_orm::error::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// A unique index among active accounts refused the write.
    #[error("{0:?} is taken by another active account")]
    Taken(UniqueField),
    /// The OAuth2 identity `(provider, subject)` is already linked to an account.
    #[error("the OAuth identity is already linked to an account")]
    IdentityLinked,
    /// A stored value no domain type accepts: the table was changed outside this service.
    #[error("user row {id} has an invalid stored {column}: {value}")]
    Corrupt {
        id: i64,
        column: &'static str,
        value: String,
    },
}

/// The values unique among active accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniqueField {
    Email,
    DisplayName,
    Phone,
}

impl StoreError {
    /// Turns a unique violation of one of the `ux_users_active_…` indexes into
    /// [`StoreError::Taken`]; any other error stays a database error.
    ///
    /// The index is recognised by name in the driver's message, read only after the marker
    /// that precedes it, because MySQL quotes the duplicate *value* earlier in the same message
    /// (`Duplicate entry 'active_phone@x.kr' for key 'users.ux_users_active_email'`):
    /// PostgreSQL says `unique constraint "ux_users_active_email"`, MySQL/MariaDB
    /// `for key 'users.ux_users_active_email'`, SQLite names the column,
    /// `UNIQUE constraint failed: users.active_email`.
    pub fn from_write(error: DbErr) -> StoreError {
        match error.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) => {
                match taken_field(&message) {
                    Some(field) => StoreError::Taken(field),
                    None if names_identity_index(&message) => StoreError::IdentityLinked,
                    None => StoreError::Database(error),
                }
            }
            _ => StoreError::Database(error),
        }
    }
}

/// The part of a unique violation's message that names the index (see [`StoreError::from_write`]).
fn violated_index(message: &str) -> Option<&str> {
    ["for key", "unique constraint", "constraint failed:"]
        .iter()
        .filter_map(|marker| message.rfind(marker).map(|at| &message[at..]))
        .min_by_key(|tail| tail.len())
}

/// PostgreSQL and MySQL name the index, SQLite the table's columns.
fn names_identity_index(message: &str) -> bool {
    violated_index(message).is_some_and(|tail| tail.contains("oauth_identities"))
}

fn taken_field(message: &str) -> Option<UniqueField> {
    let tail = violated_index(message)?;
    // Longest names first: none is a substring of another, but keep it obviously safe.
    [
        ("active_display_name", UniqueField::DisplayName),
        ("active_email", UniqueField::Email),
        ("active_phone", UniqueField::Phone),
    ]
    .into_iter()
    .find(|(name, _)| tail.contains(name))
    .map(|(_, field)| field)
}

impl StoreError {
    /// True when the database could not be reached or did not answer in time: the pool had no
    /// connection, the connection broke, or the server gave up on a timeout or shutdown. Those
    /// are worth a retry later (503); anything else is a bug or bad data (500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(error) => pillivery_platform::db::is_unavailable(error),
            StoreError::Taken(_) | StoreError::IdentityLinked | StoreError::Corrupt { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::error::{ConnAcquireErr, RuntimeErr};
    use sea_orm::sqlx;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn pool_and_connection_failures_are_unavailable() {
        let unavailable = [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            DbErr::Conn(RuntimeErr::Internal("refused".into())),
            DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::PoolTimedOut))),
            DbErr::Exec(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            )))),
        ];
        for error in unavailable {
            assert!(StoreError::from(error.clone()).is_unavailable(), "{error}");
        }
    }

    #[test]
    fn other_failures_are_not() {
        let others = [
            StoreError::Database(DbErr::RecordNotFound("items".into())),
            StoreError::Database(DbErr::Query(RuntimeErr::SqlxError(Arc::new(
                sqlx::Error::RowNotFound,
            )))),
            StoreError::Database(DbErr::Type("bad".into())),
            StoreError::Corrupt {
                id: 1,
                column: "role",
                value: "NOPE".into(),
            },
            StoreError::Taken(UniqueField::Email),
        ];
        for error in others {
            assert!(!error.is_unavailable(), "{error}");
        }
    }

    #[test]
    fn unique_violations_name_the_taken_value_on_every_backend() {
        let table = [
            (
                r#"duplicate key value violates unique constraint "ux_users_active_email""#,
                Some(UniqueField::Email),
            ),
            (
                "Duplicate entry '010-1234-5678' for key 'users.ux_users_active_phone'",
                Some(UniqueField::Phone),
            ),
            (
                "Duplicate entry 'active_phone@x.kr' for key 'users.ux_users_active_email'",
                Some(UniqueField::Email),
            ),
            (
                "Duplicate entry 'active_email' for key 'ux_users_active_display_name'",
                Some(UniqueField::DisplayName),
            ),
            (
                "UNIQUE constraint failed: users.active_display_name",
                Some(UniqueField::DisplayName),
            ),
            ("UNIQUE constraint failed: refresh_tokens.token_hash", None),
            ("something else", None),
        ];
        for (message, field) in table {
            assert_eq!(taken_field(message), field, "{message}");
        }
        for message in [
            r#"duplicate key value violates unique constraint "ux_oauth_identities_provider_subject""#,
            "Duplicate entry 'kakao-1' for key 'oauth_identities.ux_oauth_identities_provider_subject'",
            "UNIQUE constraint failed: oauth_identities.provider, oauth_identities.subject",
        ] {
            assert!(names_identity_index(message), "{message}");
            assert_eq!(taken_field(message), None, "{message}");
        }
        assert!(!names_identity_index(
            "Duplicate entry 'oauth_identities' for key 'users.ux_users_active_email'"
        ));
    }
}
