//! What can go wrong in the store, and which failures are the database being unreachable
//! (answered 503, worth a retry) rather than a bug or bad data (500).

use sea_orm::error::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// A stored value no domain type accepts: the table was changed outside this service.
    #[error("{table} row {id} has an invalid stored {column}: {value}")]
    Corrupt {
        table: &'static str,
        id: i64,
        column: &'static str,
        value: String,
    },
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(error) => pillivery_platform::db::is_unavailable(error),
            StoreError::Corrupt { .. } => false,
        }
    }
}
