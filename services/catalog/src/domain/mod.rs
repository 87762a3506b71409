//! The catalog's business rules: plain types and functions, no I/O.
//!
//! Everything a rule decides lives here so it can be tested exhaustively without a database or
//! a network: the category set ([`category`]), discount arithmetic in basis points
//! ([`money`]), paging ([`PageRequest`], from the platform), what a search means ([`search`]), what an item must be to
//! be stored ([`item`]), what a review must be ([`review`]) and the demo catalog ([`demo`]).
//! `store` persists these types and `grpc` maps them to and from the contract; neither decides
//! anything on its own.

pub mod category;
pub mod demo;
pub mod item;
pub mod money;
pub mod review;
pub mod search;

pub use category::Category;
pub use item::{
    ItemChanges, ItemDraftInput, MAX_IMPORT_ITEMS, NewItem, import_drafts, star_avg_centi,
    star_avg_from_centi,
};
pub use money::{DiscountRate, DiscountRateError, Price};
pub use pillivery_platform::paging::{Page, PageRequest};
pub use review::{ReviewChanges, ReviewDraft, ReviewListQuery, ReviewSort};
pub use search::{ItemSearch, ItemSort, SearchInput};
