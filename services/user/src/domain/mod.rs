//! The user service's rules as plain values and functions: what a valid account looks like
//! ([`account`]), what OAuth2 login checks ([`oauth`]) and how refresh tokens live, rotate and
//! die ([`refresh`]). No I/O here: the store persists what these functions decide, `grpc.rs`
//! maps them to the wire.

pub mod account;
pub mod oauth;
pub mod refresh;

pub use account::{
    NewAccount, ProfileChanges, SignUpInput, UpdateInput, normalize_email, validate_sign_up,
    validate_update,
};
pub use refresh::{RefreshStatus, RefreshToken, RefreshVerdict, judge_refresh};
