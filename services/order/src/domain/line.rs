//! What carts and orders share: the limits of a line (SPEC section 5) and the catalog's view of
//! an item at the moment it was asked.
//!
//! Quantity 1–99 per line, periodDays 30–365 on subscription lines, at most 50 lines. The checks
//! answer the reason as a [`Text`]; the caller names the field (`quantity` in a cart body,
//! `lines[2].quantity` in an order), so both report violations where the client sent them.

use pillivery_platform::error::{FieldViolation, Text};

use super::money::UnitPrice;

pub const MIN_QUANTITY: i32 = 1;
pub const MAX_QUANTITY: i32 = 99;
pub const MIN_PERIOD_DAYS: i32 = 30;
pub const MAX_PERIOD_DAYS: i32 = 365;
/// Lines of one cart or one order.
pub const MAX_LINES: usize = 50;

/// An item as the catalog answered it: names and the live unit price.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemSnapshot {
    pub item_id: i64,
    pub product_name: String,
    pub thumbnail: String,
    pub price: UnitPrice,
}

pub fn check_quantity(quantity: i32) -> Result<i32, Text> {
    if (MIN_QUANTITY..=MAX_QUANTITY).contains(&quantity) {
        Ok(quantity)
    } else {
        Err(Text::new(
            "수량은 1 이상 99 이하여야 합니다.",
            "must be between 1 and 99",
        ))
    }
}

pub fn check_period_days(period_days: i32) -> Result<i32, Text> {
    if (MIN_PERIOD_DAYS..=MAX_PERIOD_DAYS).contains(&period_days) {
        Ok(period_days)
    } else {
        Err(Text::new(
            "배송 주기는 30일 이상 365일 이하여야 합니다.",
            "must be between 30 and 365 days",
        ))
    }
}

pub fn check_item_id(item_id: i64) -> Result<i64, Text> {
    if item_id >= 1 {
        Ok(item_id)
    } else {
        Err(Text::new(
            "아이템 ID가 올바르지 않습니다.",
            "must be a positive item id",
        ))
    }
}

/// Runs `check` on `value`; a failure is recorded as a violation of `field`.
pub fn checked<T: Copy + Into<serde_json::Value>>(
    violations: &mut Vec<FieldViolation>,
    field: impl Into<String>,
    value: T,
    check: impl FnOnce(T) -> Result<T, Text>,
) -> Option<T> {
    match check(value) {
        Ok(value) => Some(value),
        Err(reason) => {
            violations.push(FieldViolation::new(field, value.into(), reason));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_include_their_edges() {
        for (quantity, ok) in [(0, false), (1, true), (99, true), (100, false), (-5, false)] {
            assert_eq!(check_quantity(quantity).is_ok(), ok, "{quantity}");
        }
        for (days, ok) in [
            (29, false),
            (30, true),
            (365, true),
            (366, false),
            (0, false),
        ] {
            assert_eq!(check_period_days(days).is_ok(), ok, "{days}");
        }
        for (item_id, ok) in [(0, false), (-1, false), (1, true)] {
            assert_eq!(check_item_id(item_id).is_ok(), ok, "{item_id}");
        }
    }

    #[test]
    fn failed_checks_name_the_field_and_value() {
        let mut violations = Vec::new();
        assert_eq!(
            checked(&mut violations, "quantity", 5, check_quantity),
            Some(5)
        );
        assert_eq!(
            checked(&mut violations, "lines[1].quantity", 0, check_quantity),
            None
        );
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "lines[1].quantity");
        assert_eq!(violations[0].rejected_value, serde_json::json!(0));
    }
}
