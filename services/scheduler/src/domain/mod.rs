//! The scheduler's rules as plain values and functions: no I/O, no tonic, no SeaORM.
//!
//! - [`dates`]: business dates — parsing, the next billing date, due-ness, the date a run bills
//!   as of, lag behind schedule.
//! - [`ladder`]: the retry policy (SPEC section 7) as a state machine over a job's billing state.
//! - [`job`]: a billing job and how it follows the order service's subscription (events with
//!   versions, and the authoritative read before every charge).

pub mod dates;
pub mod job;
pub mod ladder;

pub use dates::{as_of_for, format_date, lag_days, next_billing_date, parse_date};
pub use job::{
    Job, JobStatus, StateDecision, SubscriptionSnapshot, SubscriptionState, SubscriptionStatus,
};
pub use ladder::{AfterFailure, Ladder, LadderError, RetryPolicy};
