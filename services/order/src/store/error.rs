//! What can go wrong in the store itself, and which failures are the database being unreachable.
//!
//! Business refusals (a missing line, an illegal transition) are not here: the store answers
//! them as [`crate::error::OrderError`] variants. This is the database failing, or a stored value
//! no domain type accepts.

use sea_orm::error::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// A stored value no domain type accepts (an unknown status, prices that do not add up):
    /// the table was changed outside this service.
    #[error("{table} {id} has an invalid stored {column}: {value}")]
    Corrupt {
        table: &'static str,
        id: i64,
        column: &'static str,
        value: String,
    },
}

impl StoreError {
    /// True when the database could not be reached or did not answer in time (503, worth a
    /// retry); anything else is a bug or bad data (500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(error) => pillivery_platform::db::is_unavailable(error),
            StoreError::Corrupt { .. } => false,
        }
    }

    /// True for a unique-constraint violation: a concurrent writer got there first.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Database(error)
                if matches!(error.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::error::{ConnAcquireErr, RuntimeErr};

    #[test]
    fn pool_failures_are_unavailable_and_bad_data_is_not() {
        assert!(
            StoreError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)).is_unavailable()
        );
        assert!(
            StoreError::from(DbErr::Conn(RuntimeErr::Internal("refused".into()))).is_unavailable()
        );
        let corrupt = StoreError::Corrupt {
            table: "orders",
            id: 1,
            column: "status",
            value: "NOPE".into(),
        };
        assert!(!corrupt.is_unavailable());
        assert!(!corrupt.is_unique_violation());
        assert!(!StoreError::from(DbErr::RecordNotFound("x".into())).is_unavailable());
    }
}
