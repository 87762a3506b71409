//! Prices and discounts in exact integer arithmetic.
//!
//! Money is integer KRW. A discount rate is a fraction with at most 3 decimals, so it is kept
//! as basis points (1 bp = 0.0001) that are multiples of 10; the JSON double is only its wire
//! encoding. `discountPrice = round_half_up(originPrice × rate)` is computed on integers with an
//! `i128` intermediate, so no amount ever passes through a float (the original subtracted
//! discounts twice and rounded through doubles; SPEC section 12).

use pillivery_platform::error::Text;

/// Basis points in one whole (rate 1.0).
const BASIS_POINTS_PER_ONE: i128 = 10_000;

/// A discount rate `0 ≤ rate < 1` with at most 3 decimals, held as basis points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiscountRate {
    basis_points: u16,
}

/// Why a number is not a discount rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscountRateError {
    #[error("discount rate is not a finite number")]
    NotFinite,
    #[error("discount rate is negative")]
    Negative,
    #[error("discount rate is not below 1")]
    NotBelowOne,
    #[error("discount rate has more than 3 decimals")]
    TooManyDecimals,
}

impl DiscountRateError {
    /// The reason shown to the client in a field violation.
    pub fn reason(self) -> Text {
        match self {
            DiscountRateError::NotFinite => Text::new(
                "할인율은 숫자여야 합니다.",
                "The discount rate must be a finite number.",
            ),
            DiscountRateError::Negative => Text::new(
                "할인율은 0 이상이어야 합니다.",
                "The discount rate must not be negative.",
            ),
            DiscountRateError::NotBelowOne => Text::new(
                "할인율은 1보다 작아야 합니다.",
                "The discount rate must be below 1.",
            ),
            DiscountRateError::TooManyDecimals => Text::new(
                "할인율은 소수점 셋째 자리까지만 입력할 수 있습니다.",
                "The discount rate may have at most 3 decimals.",
            ),
        }
    }
}

impl DiscountRate {
    /// No discount.
    pub const ZERO: DiscountRate = DiscountRate { basis_points: 0 };
    /// The largest rate: 0.999.
    pub const MAX: DiscountRate = DiscountRate {
        basis_points: 9_990,
    };

    /// Reads a rate sent as a fraction (`0.125` = 12.5 %).
    ///
    /// A double cannot hold most decimal fractions exactly (`0.1` is 0.1000000000000000055…), so
    /// the value is accepted when it is within float noise of a whole number of thousandths;
    /// anything further away has more than 3 decimals and is refused rather than rounded.
    pub fn from_fraction(fraction: f64) -> Result<DiscountRate, DiscountRateError> {
        if !fraction.is_finite() {
            return Err(DiscountRateError::NotFinite);
        }
        if fraction < 0.0 {
            return Err(DiscountRateError::Negative);
        }
        if fraction >= 1.0 {
            return Err(DiscountRateError::NotBelowOne);
        }
        let thousandths = (fraction * 1_000.0).round();
        // `k as f64 / 1000.0` is the double nearest k/1000, exactly what parsing "0.kkk" gives,
        // so a rate sent as a 3-decimal JSON number matches exactly. A few units in the last
        // place of slack accept a computed rate (0.1 + 0.2) and nothing with a real 4th decimal.
        let nearest = thousandths / 1_000.0;
        if (fraction - nearest).abs() > 8.0 * f64::EPSILON * nearest {
            return Err(DiscountRateError::TooManyDecimals);
        }
        if thousandths >= 1_000.0 {
            // 0.9999999999999999 is 1 up to float noise.
            return Err(DiscountRateError::NotBelowOne);
        }
        // An integer in 0..=999 here, so the conversion is exact.
        let basis_points = thousandths as u16 * 10;
        Ok(DiscountRate { basis_points })
    }

    /// The rate from stored basis points; `None` unless a multiple of 10 in `0..=9990`.
    pub fn from_basis_points(basis_points: u16) -> Option<DiscountRate> {
        (basis_points <= DiscountRate::MAX.basis_points && basis_points.is_multiple_of(10))
            .then_some(DiscountRate { basis_points })
    }

    pub fn basis_points(self) -> u16 {
        self.basis_points
    }

    /// The wire encoding: the double nearest the decimal fraction (`1250` bp → `0.125`).
    pub fn as_fraction(self) -> f64 {
        f64::from(self.basis_points) / 10_000.0
    }

    /// On sale means a rate above zero.
    pub fn is_discounted(self) -> bool {
        self.basis_points > 0
    }
}

/// An origin price with its discount applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Price {
    pub origin: i64,
    pub discount: i64,
    pub real: i64,
}

impl Price {
    /// `discount = round_half_up(origin × rate)`, `real = origin − discount`.
    ///
    /// Half-up is `floor(x + ½)`, computed as a floor division on integers; `div_euclid` keeps
    /// it a floor even for a negative origin, which validation never lets through anyway.
    pub fn of(origin: i64, rate: DiscountRate) -> Price {
        let product = i128::from(origin) * i128::from(rate.basis_points);
        let discount = (product + BASIS_POINTS_PER_ONE / 2).div_euclid(BASIS_POINTS_PER_ONE);
        // |discount| ≤ |origin| because the rate is below 1, so it fits an i64.
        let discount = i64::try_from(discount).unwrap_or(origin);
        Price {
            origin,
            discount,
            real: origin - discount,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rate(fraction: f64) -> DiscountRate {
        DiscountRate::from_fraction(fraction).expect("valid rate in test table")
    }

    #[test]
    fn fractions_become_basis_points() {
        let table = [
            (0.0, 0),
            (-0.0, 0),
            (0.001, 10),
            (0.005, 50),
            (0.05, 500),
            (0.1, 1_000),
            (0.125, 1_250),
            (0.2, 2_000),
            (0.3, 3_000),
            (0.333, 3_330),
            (0.5, 5_000),
            (0.7, 7_000),
            (0.9, 9_000),
            (0.999, 9_990),
            (0.1 + 0.2, 3_000),
            (0.07 * 3.0, 2_100),
        ];
        for (fraction, basis_points) in table {
            assert_eq!(
                DiscountRate::from_fraction(fraction).map(DiscountRate::basis_points),
                Ok(basis_points),
                "{fraction}"
            );
        }
    }

    #[test]
    fn invalid_fractions_are_refused_not_rounded() {
        let table = [
            (f64::NAN, DiscountRateError::NotFinite),
            (f64::INFINITY, DiscountRateError::NotFinite),
            (f64::NEG_INFINITY, DiscountRateError::NotFinite),
            (-0.001, DiscountRateError::Negative),
            (-1e-300, DiscountRateError::Negative),
            (1.0, DiscountRateError::NotBelowOne),
            (1.5, DiscountRateError::NotBelowOne),
            (1.0 - f64::EPSILON / 2.0, DiscountRateError::NotBelowOne),
            (0.999_999_999_999_9, DiscountRateError::TooManyDecimals),
            (1e-13, DiscountRateError::TooManyDecimals),
            (0.0005, DiscountRateError::TooManyDecimals),
            (0.1234, DiscountRateError::TooManyDecimals),
            (0.123_000_000_1, DiscountRateError::TooManyDecimals),
            (0.9995, DiscountRateError::TooManyDecimals),
            (1e-300, DiscountRateError::TooManyDecimals),
        ];
        for (fraction, error) in table {
            assert_eq!(
                DiscountRate::from_fraction(fraction),
                Err(error),
                "{fraction}"
            );
            assert!(!error.reason().ko.is_empty() && !error.reason().en.is_empty());
        }
    }

    #[test]
    fn basis_points_round_trip_through_the_wire_fraction() {
        for basis_points in (0..=9_990).step_by(10) {
            let rate = DiscountRate::from_basis_points(basis_points).expect("multiple of 10");
            assert_eq!(rate.basis_points(), basis_points);
            assert_eq!(DiscountRate::from_fraction(rate.as_fraction()), Ok(rate));
        }
        assert_eq!(rate(0.125).as_fraction(), 0.125);
        assert_eq!(rate(0.1).as_fraction(), 0.1);
        for invalid in [1, 5, 9_995, 9_999, 10_000, u16::MAX] {
            assert_eq!(DiscountRate::from_basis_points(invalid), None, "{invalid}");
        }
        assert!(!DiscountRate::ZERO.is_discounted());
        assert!(rate(0.001).is_discounted());
        assert_eq!(DiscountRate::MAX, rate(0.999));
    }

    #[test]
    fn prices_round_half_up() {
        let table = [
            // (origin, rate, discount)
            (15_000, 0.125, 1_875),
            (999, 0.005, 5), // 4.995 rounds up
            (1, 0.5, 1),     // 0.5 rounds up
            (3, 0.5, 2),     // 1.5 rounds up
            (10, 0.05, 1),   // 0.5 rounds up
            (9, 0.05, 0),    // 0.45 rounds down
            (1, 0.001, 0),
            (1, 0.999, 1),
            (499, 0.001, 0), // 0.499
            (500, 0.001, 1), // 0.5
            (12_345, 0.0, 0),
            (0, 0.5, 0),
            (0, 0.0, 0),
            (29_900, 0.333, 9_957), // 9956.7
            (i64::MAX, 0.0, 0),
            (i64::MAX, 0.5, i64::MAX / 2 + 1), // x.5 rounds up
        ];
        for (origin, fraction, discount) in table {
            let price = Price::of(origin, rate(fraction));
            assert_eq!(
                price,
                Price {
                    origin,
                    discount,
                    real: origin - discount
                },
                "{origin} at {fraction}"
            );
        }
    }

    #[test]
    fn the_largest_price_at_the_largest_rate_does_not_overflow() {
        let price = Price::of(i64::MAX, DiscountRate::MAX);
        assert!(price.discount <= price.origin);
        assert_eq!(price.real + price.discount, i64::MAX);
    }

    fn any_rate() -> impl Strategy<Value = DiscountRate> {
        (0u16..=999).prop_map(|thousandths| {
            DiscountRate::from_basis_points(thousandths * 10).expect("multiple of 10")
        })
    }

    proptest! {
        #[test]
        fn discount_matches_the_exact_rational(origin in 0i64..=i64::MAX, rate in any_rate()) {
            let price = Price::of(origin, rate);
            prop_assert!(price.discount >= 0);
            prop_assert!(price.discount <= price.origin);
            prop_assert_eq!(price.real + price.discount, price.origin);
            // d = round_half_up(q) with q = origin·bp/10000  ⇔  −½ ≤ q − d < ½
            //                                             ⇔  −10000 ≤ 2·(origin·bp − 10000·d) < 10000
            let twice_error = 2 * (i128::from(origin) * i128::from(rate.basis_points())
                - 10_000 * i128::from(price.discount));
            prop_assert!((-10_000..10_000).contains(&twice_error), "error {}", twice_error);
        }

        #[test]
        fn small_prices_match_the_exact_rational(origin in 0i64..1_000_000, rate in any_rate()) {
            let price = Price::of(origin, rate);
            let twice_error = 2 * (i128::from(origin) * i128::from(rate.basis_points())
                - 10_000 * i128::from(price.discount));
            prop_assert!((-10_000..10_000).contains(&twice_error));
            prop_assert_eq!(price.real, origin - price.discount);
        }

        #[test]
        fn three_decimal_fractions_are_read_exactly(thousandths in 0u16..=999) {
            let text = format!("0.{thousandths:03}");
            let fraction: f64 = text.parse().expect("decimal literal");
            let rate = DiscountRate::from_fraction(fraction).expect("3 decimals");
            prop_assert_eq!(rate.basis_points(), thousandths * 10);
        }

        #[test]
        fn four_decimal_fractions_are_refused(ten_thousandths in 0u16..=9_999) {
            prop_assume!(!ten_thousandths.is_multiple_of(10));
            let text = format!("0.{ten_thousandths:04}");
            let fraction: f64 = text.parse().expect("decimal literal");
            prop_assert_eq!(
                DiscountRate::from_fraction(fraction),
                Err(DiscountRateError::TooManyDecimals)
            );
        }
    }
}
