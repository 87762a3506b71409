//! Carts: a normal cart (one-time purchases) and a subscription cart (lines with a period) per
//! user, and the rules for adding, changing and pricing their lines (SPEC section 5).
//!
//! A cart stores only item ids, quantities and periods; names and prices are asked from the
//! catalog each time the cart is shown, so a cart never shows a stale price. Lines whose item
//! the catalog no longer has (deleted) are left out of the view and its totals: they cannot be
//! bought, and removing them stays possible.

use std::collections::HashMap;

use pillivery_platform::error::{FieldViolation, Text};

use super::line::{
    ItemSnapshot, MAX_QUANTITY, check_item_id, check_period_days, check_quantity, checked,
};
use super::money::{AmountOverflow, Totals, UnitPrice, line_amount};

/// Which of the caller's two carts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CartKind {
    Normal,
    Subscription,
}

impl CartKind {
    /// The path value (`normal`, `subscription`); anything else is a violation of `kind`.
    pub fn parse(value: &str) -> Result<CartKind, Vec<FieldViolation>> {
        match value {
            "normal" => Ok(CartKind::Normal),
            "subscription" => Ok(CartKind::Subscription),
            other => Err(vec![FieldViolation::new(
                "kind",
                serde_json::Value::from(other),
                Text::new(
                    "장바구니 종류는 normal 또는 subscription 이어야 합니다.",
                    "must be `normal` or `subscription`",
                ),
            )]),
        }
    }

    /// As stored and as in the path.
    pub fn as_str(self) -> &'static str {
        match self {
            CartKind::Normal => "normal",
            CartKind::Subscription => "subscription",
        }
    }

    /// The cart a line belongs in: subscription lines are the ones with a period.
    pub fn of_line(period_days: Option<i32>) -> CartKind {
        if period_days.is_some() {
            CartKind::Subscription
        } else {
            CartKind::Normal
        }
    }
}

/// A validated line to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewCartLine {
    pub kind: CartKind,
    pub item_id: i64,
    pub quantity: i32,
    /// `Some` exactly in the subscription cart.
    pub period_days: Option<i32>,
}

fn period_refused() -> Text {
    Text::new(
        "일반 장바구니에는 배송 주기를 지정할 수 없습니다.",
        "only subscription cart lines have a period",
    )
}

fn period_required() -> Text {
    Text::new(
        "정기구독 장바구니에는 배송 주기가 필요합니다.",
        "is required in the subscription cart",
    )
}

/// Checks the body of an add, every violation at once. The kind comes from the path and is
/// already parsed.
pub fn new_line(
    kind: CartKind,
    item_id: i64,
    quantity: i32,
    period_days: Option<i32>,
) -> Result<NewCartLine, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let item_id = checked(&mut violations, "itemId", item_id, check_item_id);
    let quantity = checked(&mut violations, "quantity", quantity, check_quantity);
    let period_days = period_for(kind, period_days, true, &mut violations);
    match (item_id, quantity, period_days) {
        (Some(item_id), Some(quantity), Some(period_days)) if violations.is_empty() => {
            Ok(NewCartLine {
                kind,
                item_id,
                quantity,
                period_days,
            })
        }
        _ => Err(violations),
    }
}

/// `Some(period)` as the line should store it; `None` after recording a violation.
fn period_for(
    kind: CartKind,
    period_days: Option<i32>,
    required: bool,
    violations: &mut Vec<FieldViolation>,
) -> Option<Option<i32>> {
    match (kind, period_days) {
        (CartKind::Normal, None) => Some(None),
        (CartKind::Normal, Some(days)) => {
            violations.push(FieldViolation::new(
                "periodDays",
                days.into(),
                period_refused(),
            ));
            None
        }
        (CartKind::Subscription, Some(days)) => {
            checked(violations, "periodDays", days, check_period_days).map(Some)
        }
        (CartKind::Subscription, None) if required => {
            violations.push(FieldViolation::new(
                "periodDays",
                serde_json::Value::Null,
                period_required(),
            ));
            None
        }
        (CartKind::Subscription, None) => Some(None),
    }
}

/// A validated change of one line; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CartLineChange {
    pub quantity: Option<i32>,
    pub period_days: Option<i32>,
}

pub fn line_change(
    kind: CartKind,
    quantity: Option<i32>,
    period_days: Option<i32>,
) -> Result<CartLineChange, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let quantity = match quantity {
        Some(quantity) => checked(&mut violations, "quantity", quantity, check_quantity).map(Some),
        None => Some(None),
    };
    let period_days = period_for(kind, period_days, false, &mut violations);
    match (quantity, period_days) {
        (Some(quantity), Some(period_days)) if violations.is_empty() => Ok(CartLineChange {
            quantity,
            period_days,
        }),
        _ => Err(violations),
    }
}

/// The quantity after adding `added` to a line holding `existing`: over 99 is a violation of
/// `quantity`, never clamped.
pub fn merged_quantity(existing: i32, added: i32) -> Result<i32, Vec<FieldViolation>> {
    match existing.checked_add(added) {
        Some(total) if total <= MAX_QUANTITY => Ok(total),
        _ => Err(vec![FieldViolation::new(
            "quantity",
            added.into(),
            Text::owned(
                format!("장바구니에 이미 {existing}개가 있어 합계가 99개를 넘습니다."),
                format!("the cart already holds {existing}; a line holds at most 99"),
            ),
        )]),
    }
}

/// A line as stored in a cart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredCartLine {
    pub item_id: i64,
    pub quantity: i32,
    pub period_days: Option<i32>,
}

/// A line as shown, with live prices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartLineView {
    pub item_id: i64,
    pub product_name: String,
    pub thumbnail: String,
    pub quantity: i32,
    pub period_days: Option<i32>,
    pub price: UnitPrice,
    /// quantity × real price.
    pub line_total: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CartView {
    pub lines: Vec<CartLineView>,
    pub totals: Totals,
}

/// The cart with the catalog's live prices. Lines whose item is missing from `items` (deleted
/// from the catalog) are left out.
pub fn cart_view(
    lines: &[StoredCartLine],
    items: &HashMap<i64, ItemSnapshot>,
) -> Result<CartView, AmountOverflow> {
    let mut view = CartView::default();
    for line in lines {
        let Some(item) = items.get(&line.item_id) else {
            continue;
        };
        view.lines.push(CartLineView {
            item_id: line.item_id,
            product_name: item.product_name.clone(),
            thumbnail: item.thumbnail.clone(),
            quantity: line.quantity,
            period_days: line.period_days,
            price: item.price,
            line_total: line_amount(line.quantity, item.price.real())?,
        });
    }
    view.totals = Totals::of(view.lines.iter().map(|line| (line.quantity, line.price)))?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn kinds_come_from_the_path() {
        assert_eq!(CartKind::parse("normal"), Ok(CartKind::Normal));
        assert_eq!(CartKind::parse("subscription"), Ok(CartKind::Subscription));
        for bad in ["", "Normal", "NORMAL", "subscriptions", "x"] {
            assert_eq!(
                CartKind::parse(bad).unwrap_err()[0].field,
                "kind",
                "{bad:?}"
            );
        }
        assert_eq!(CartKind::of_line(Some(30)), CartKind::Subscription);
        assert_eq!(CartKind::of_line(None), CartKind::Normal);
    }

    #[test]
    fn adds_are_checked_all_at_once() {
        use CartKind::{Normal, Subscription};
        type Case = (
            CartKind,
            i64,
            i32,
            Option<i32>,
            Result<Option<i32>, Vec<&'static str>>,
        );
        let table: [Case; 11] = [
            (Normal, 1, 1, None, Ok(None)),
            (Normal, 1, 99, None, Ok(None)),
            (Subscription, 1, 1, Some(30), Ok(Some(30))),
            (Subscription, 1, 1, Some(365), Ok(Some(365))),
            (Normal, 1, 1, Some(30), Err(vec!["periodDays"])),
            (Subscription, 1, 1, None, Err(vec!["periodDays"])),
            (Subscription, 1, 1, Some(29), Err(vec!["periodDays"])),
            (Subscription, 1, 1, Some(366), Err(vec!["periodDays"])),
            (Normal, 1, 0, None, Err(vec!["quantity"])),
            (Normal, 0, 100, None, Err(vec!["itemId", "quantity"])),
            (
                Subscription,
                -1,
                0,
                Some(0),
                Err(vec!["itemId", "quantity", "periodDays"]),
            ),
        ];
        for (kind, item_id, quantity, period, expected) in table {
            let got = new_line(kind, item_id, quantity, period);
            match expected {
                Ok(period_days) => assert_eq!(
                    got,
                    Ok(NewCartLine {
                        kind,
                        item_id,
                        quantity,
                        period_days
                    })
                ),
                Err(expected) => assert_eq!(
                    fields(&got.unwrap_err()),
                    expected,
                    "{kind:?} {item_id} {quantity} {period:?}"
                ),
            }
        }
    }

    #[test]
    fn changes_are_checked() {
        use CartKind::{Normal, Subscription};
        assert_eq!(
            line_change(Normal, Some(5), None),
            Ok(CartLineChange {
                quantity: Some(5),
                period_days: None
            })
        );
        assert_eq!(
            line_change(Subscription, None, None),
            Ok(CartLineChange::default())
        );
        assert_eq!(
            line_change(Subscription, None, Some(60))
                .unwrap()
                .period_days,
            Some(60)
        );
        assert_eq!(
            fields(&line_change(Normal, Some(0), Some(30)).unwrap_err()),
            ["quantity", "periodDays"]
        );
        assert_eq!(
            fields(&line_change(Subscription, Some(100), Some(400)).unwrap_err()),
            ["quantity", "periodDays"]
        );
    }

    #[test]
    fn adding_sums_quantities_up_to_99() {
        assert_eq!(merged_quantity(1, 1), Ok(2));
        assert_eq!(merged_quantity(50, 49), Ok(99));
        let over = merged_quantity(50, 50).unwrap_err().remove(0);
        assert_eq!(over.field, "quantity");
        assert_eq!(over.rejected_value, serde_json::json!(50));
        assert!(merged_quantity(i32::MAX, 1).is_err());
    }

    #[test]
    fn views_use_live_prices_and_skip_deleted_items() {
        let items = HashMap::from([
            (
                1,
                ItemSnapshot {
                    item_id: 1,
                    product_name: "루테인".into(),
                    thumbnail: "t1".into(),
                    price: UnitPrice::new(10_000, 1_000).unwrap(),
                },
            ),
            (
                2,
                ItemSnapshot {
                    item_id: 2,
                    product_name: "오메가3".into(),
                    thumbnail: "t2".into(),
                    price: UnitPrice::new(30_000, 0).unwrap(),
                },
            ),
        ]);
        let lines = [
            StoredCartLine {
                item_id: 2,
                quantity: 1,
                period_days: None,
            },
            StoredCartLine {
                item_id: 3,
                quantity: 5,
                period_days: None,
            },
            StoredCartLine {
                item_id: 1,
                quantity: 3,
                period_days: None,
            },
        ];
        let view = cart_view(&lines, &items).unwrap();
        let ids: Vec<i64> = view.lines.iter().map(|line| line.item_id).collect();
        assert_eq!(ids, [2, 1]);
        assert_eq!(view.lines[1].line_total, 27_000);
        assert_eq!(
            view.totals,
            Totals {
                quantity: 4,
                origin: 60_000,
                discount: 3_000,
                price: 57_000
            }
        );
    }
}
