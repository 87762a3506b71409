//! The payment rules as plain types and functions: no I/O, no tonic, no SeaORM.
//!
//! - [`payment`]: a customer's payment of an order (ready → approved / canceled / failed →
//!   refunded), what a repeat of each step answers, the PG ids and URLs we derive.
//! - [`charge`]: a renewal charge for the scheduler, exactly once per (subscription, cycle):
//!   what a call does given what is recorded.

pub mod charge;
pub mod payment;

pub use charge::{ChargeIdentity, ChargeState, ChargeStep, RecordedCharge, next_charge_step};
pub use payment::{
    AbandonKind, AbandonStep, ApproveStep, AttemptSummary, PaymentStatus, ReadyStep, abandon_step,
    approve_step, order_partner_id, pg_return_url, ready_step, storefront_url,
};
