//! Money of carts and orders: integer KRW, exact, checked.
//!
//! A unit price is the catalog's origin price and discount; the real price is derived here as
//! `origin − discount`, so every total this service shows satisfies
//! `totalPrice = totalOriginPrice − totalDiscountPrice` by construction: the discount is
//! subtracted exactly once (the original subtracted it twice). Every sum and product is checked;
//! an amount that does not fit an `i64` is an error, never a wrapped or clamped number.

/// One unit of an item: origin price and discount, both in KRW.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnitPrice {
    origin: i64,
    discount: i64,
}

impl UnitPrice {
    /// `None` unless `0 ≤ discount ≤ origin`.
    pub fn new(origin: i64, discount: i64) -> Option<UnitPrice> {
        (0 <= discount && discount <= origin).then_some(UnitPrice { origin, discount })
    }

    pub fn origin(self) -> i64 {
        self.origin
    }

    pub fn discount(self) -> i64 {
        self.discount
    }

    /// What the customer pays for one unit.
    pub fn real(self) -> i64 {
        self.origin - self.discount
    }
}

/// An amount left the range of `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("amount out of range")]
pub struct AmountOverflow;

/// The sums of a cart or an order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Σ quantity.
    pub quantity: i64,
    /// Σ quantity × origin price.
    pub origin: i64,
    /// Σ quantity × discount.
    pub discount: i64,
    /// Σ quantity × real price (= origin − discount).
    pub price: i64,
}

/// `quantity × price`, checked.
pub fn line_amount(quantity: i32, price: i64) -> Result<i64, AmountOverflow> {
    i64::from(quantity).checked_mul(price).ok_or(AmountOverflow)
}

impl Totals {
    /// The totals of `(quantity, unit price)` lines.
    pub fn of(lines: impl IntoIterator<Item = (i32, UnitPrice)>) -> Result<Totals, AmountOverflow> {
        let mut totals = Totals::default();
        for (quantity, unit) in lines {
            let add = |sum: i64, amount: Result<i64, AmountOverflow>| {
                sum.checked_add(amount?).ok_or(AmountOverflow)
            };
            totals.quantity = add(totals.quantity, Ok(i64::from(quantity)))?;
            totals.origin = add(totals.origin, line_amount(quantity, unit.origin))?;
            totals.discount = add(totals.discount, line_amount(quantity, unit.discount))?;
            totals.price = add(totals.price, line_amount(quantity, unit.real()))?;
        }
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unit_prices_need_a_discount_within_the_origin() {
        let table = [
            (0, 0, Some(0)),
            (10_000, 0, Some(10_000)),
            (10_000, 1_000, Some(9_000)),
            (10_000, 10_000, Some(0)),
            (10_000, 10_001, None),
            (10_000, -1, None),
            (-1, 0, None),
            (i64::MAX, i64::MAX, Some(0)),
        ];
        for (origin, discount, real) in table {
            assert_eq!(
                UnitPrice::new(origin, discount).map(UnitPrice::real),
                real,
                "{origin} - {discount}"
            );
        }
    }

    #[test]
    fn totals_subtract_the_discount_once() {
        let vitamin = UnitPrice::new(20_000, 2_000).unwrap();
        let omega = UnitPrice::new(35_000, 0).unwrap();
        let totals = Totals::of([(3, vitamin), (1, omega)]).unwrap();
        assert_eq!(
            totals,
            Totals {
                quantity: 4,
                origin: 95_000,
                discount: 6_000,
                price: 89_000,
            }
        );
        assert_eq!(Totals::of([]).unwrap(), Totals::default());
    }

    #[test]
    fn amounts_beyond_i64_are_errors() {
        let huge = UnitPrice::new(i64::MAX / 2, 0).unwrap();
        assert_eq!(Totals::of([(3, huge)]), Err(AmountOverflow));
        assert_eq!(
            Totals::of([(1, huge), (1, huge), (1, huge)]),
            Err(AmountOverflow)
        );
        assert_eq!(line_amount(99, i64::MAX / 99), Ok(i64::MAX / 99 * 99));
        assert_eq!(line_amount(99, i64::MAX / 98), Err(AmountOverflow));
    }

    proptest! {
        #[test]
        fn totals_are_consistent(
            lines in proptest::collection::vec((1i32..=99, 0i64..=10_000_000, 0u32..=1000), 0..=50)
        ) {
            let lines: Vec<(i32, UnitPrice)> = lines
                .into_iter()
                .map(|(quantity, origin, per_mille)| {
                    let discount = origin * i64::from(per_mille) / 1000;
                    (quantity, UnitPrice::new(origin, discount).unwrap())
                })
                .collect();
            let totals = Totals::of(lines.clone()).unwrap();
            prop_assert_eq!(totals.price, totals.origin - totals.discount);
            let line_totals: i64 = lines
                .iter()
                .map(|(quantity, unit)| line_amount(*quantity, unit.real()).unwrap())
                .sum();
            prop_assert_eq!(totals.price, line_totals);
            prop_assert_eq!(
                totals.quantity,
                lines.iter().map(|(quantity, _)| i64::from(*quantity)).sum::<i64>()
            );
            prop_assert!(totals.discount <= totals.origin);
        }
    }
}
