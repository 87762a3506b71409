//! What can go wrong in the store, and which failures are the database being unreachable.
//!
//! The service answers 503 (retryable) when the database cannot be reached or answered too
//! slowly, and 500 for everything else; [`StoreError::is_unavailable`] draws that line so the
//! mapping to a status lives in one place in `grpc.rs`.

use pillivery_platform::error::FieldViolation;
use sea_orm::error::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// A stored value no domain type accepts (an unknown category code, a rate off the
    /// basis-point grid): the table was changed outside this service.
    #[error("item {item_id} has an invalid stored {column}: {value}")]
    Corrupt {
        item_id: i64,
        column: &'static str,
        value: String,
    },
    /// The request breaks a rule only the store knows about (how many ids a batch read takes,
    /// what a sale line may hold): a client error, answered as the violations listed.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
}

impl StoreError {
    /// True when the database could not be reached or did not answer in time: the pool had no
    /// connection, the connection broke, or the server gave up on a timeout or shutdown. Those
    /// are worth a retry later (503); anything else is a bug or bad data (500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(error) => pillivery_platform::db::is_unavailable(error),
            StoreError::Corrupt { .. } | StoreError::Invalid(_) => false,
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
                item_id: 1,
                column: "category",
                value: "NOPE".into(),
            },
        ];
        for error in others {
            assert!(!error.is_unavailable(), "{error}");
        }
    }
}
