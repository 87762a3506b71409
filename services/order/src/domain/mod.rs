//! The order service's business rules as plain types and functions: no I/O, no tonic, no
//! SeaORM. Everything here is tested exhaustively in place.
//!
//! - [`money`]: unit prices and totals in integer KRW (the discount subtracted once).
//! - [`line`]: the limits every cart and order line obeys, and the catalog's item snapshot.
//! - [`cart`]: the two carts, adding and changing lines, the priced view.
//! - [`order`]: checkout validation, the price snapshot, the idempotency hash, the status
//!   machine.
//! - [`subscription`]: billing dates, customer changes, the subscription status machine.
//! - [`PageRequest`] / [`Page`]: paging, shared by every service (`pillivery_platform::paging`).

pub mod cart;
pub mod line;
pub mod money;
pub mod order;
pub mod subscription;

pub use cart::{CartKind, CartLineChange, CartView, NewCartLine, StoredCartLine};
pub use line::ItemSnapshot;
pub use money::{Totals, UnitPrice};
pub use order::{
    InvalidTransition, NewOrder, OrderInput, OrderStatus, OrderTransition, Receiver, ValidOrder,
};
pub use pillivery_platform::paging::{Page, PageRequest};
pub use subscription::{
    BillingDates, CycleCheck, InvalidSubscriptionState, SubscriptionChange, SubscriptionStatus,
    Terms,
};
