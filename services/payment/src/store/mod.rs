//! The payment service's storage: its own database, which no other service reads.

pub mod migration;
