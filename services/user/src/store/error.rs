//! What can go wrong in the store: a value already taken by another active account, a row
//! changed outside this service, or the database failing — and which of those failures are
//! the database being unreachable (503, retryable) rather than a bug (500).

use sea_orm::error::{ConnAcquireErr, DbErr, RuntimeErr};
use sea_orm::sqlx;
use sea_orm::sqlx::error::DatabaseError;

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
            StoreError::Database(error) => db_error_is_unavailable(error),
            StoreError::Taken(_) | StoreError::IdentityLinked | StoreError::Corrupt { .. } => false,
        }
    }
}

fn db_error_is_unavailable(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            true
        }
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            sqlx_error_is_unavailable(error)
        }
        _ => false,
    }
}

fn sqlx_error_is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => {
            if let Some(mysql) = database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return mysql_error_is_unavailable(mysql.number())
                    || mysql.code().is_some_and(|state| state.starts_with("08"));
            }
            if let Some(postgres) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                return postgres_state_is_unavailable(postgres.code());
            }
            if let Some(sqlite) = database.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                return sqlite
                    .code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .is_some_and(sqlite_code_is_unavailable);
            }
            false
        }
        _ => false,
    }
}

/// SQLSTATE classes and codes of PostgreSQL that mean "not now" rather than "wrong".
fn postgres_state_is_unavailable(state: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (too many connections, disk full).
    state.starts_with("08")
        || state.starts_with("53")
        || matches!(
            state,
            "57014" // query_canceled: statement_timeout
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now
                | "55P03" // lock_not_available: lock_timeout
        )
}

/// MySQL/MariaDB error numbers that mean "not now".
fn mysql_error_is_unavailable(number: u16) -> bool {
    matches!(
        number,
        1040 // too many connections
            | 1053 // server shutdown in progress
            | 1205 // lock wait timeout
            | 1927 // MariaDB: connection was killed
            | 1969 // MariaDB: max_statement_time exceeded
            | 2006 // server has gone away
            | 2013 // lost connection during query
            | 3024 // MySQL: max_execution_time exceeded
    )
}

/// SQLite primary result codes (the low byte of the extended code) that mean "not now".
fn sqlite_code_is_unavailable(extended: i32) -> bool {
    matches!(
        extended & 0xff,
        5 // SQLITE_BUSY: another writer held the lock past busy_timeout
            | 6 // SQLITE_LOCKED
            | 10 // SQLITE_IOERR
            | 14 // SQLITE_CANTOPEN
    )
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn server_codes() {
        assert!(postgres_state_is_unavailable("08006"));
        assert!(postgres_state_is_unavailable("53300"));
        assert!(postgres_state_is_unavailable("57014"));
        assert!(!postgres_state_is_unavailable("23505"));
        assert!(!postgres_state_is_unavailable("42P01"));
        assert!(mysql_error_is_unavailable(2006));
        assert!(mysql_error_is_unavailable(1205));
        assert!(!mysql_error_is_unavailable(1062));
        assert!(sqlite_code_is_unavailable(5));
        assert!(sqlite_code_is_unavailable(517)); // SQLITE_BUSY_SNAPSHOT
        assert!(!sqlite_code_is_unavailable(19)); // SQLITE_CONSTRAINT
        assert!(!sqlite_code_is_unavailable(2067)); // SQLITE_CONSTRAINT_UNIQUE
    }
}
