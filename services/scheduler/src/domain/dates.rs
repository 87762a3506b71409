//! Business dates: every billing date is a `YYYY-MM-DD` day in the business time zone
//! (SPEC section 2), and cycle `n + 1` is due `period_days` after cycle `n` was billed
//! (SPEC section 5). Arithmetic is whole days on [`NaiveDate`], so month ends and leap years
//! need no special case: 2028-01-31 + 30 days is 2028-03-01, 2028-02-29 exists.

use chrono::{DateTime, Days, NaiveDate, Utc};
use pillivery_platform::time::BusinessCalendar;

/// The canonical text of a business date.
pub fn format_date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// A `YYYY-MM-DD` date, strictly: four-digit year, two-digit month and day, a real calendar
/// day. chrono alone would accept `2026-1-5`; clients must send what we answer.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| index == 4 || index == 7 || byte.is_ascii_digit());
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// The date cycle `n + 1` is due when cycle `n` was billed on `billed`; `None` when the
/// period is not positive or the date would leave chrono's range.
pub fn next_billing_date(billed: NaiveDate, period_days: i32) -> Option<NaiveDate> {
    let period = u64::try_from(period_days).ok().filter(|days| *days > 0)?;
    billed.checked_add_days(Days::new(period))
}

/// `date` plus `days` whole days; `None` past chrono's range.
pub fn add_days(date: NaiveDate, days: u32) -> Option<NaiveDate> {
    date.checked_add_days(Days::new(u64::from(days)))
}

/// The business date the loop bills as of at `now`: today once the billing hour has come in
/// the business time zone, else yesterday (so a job due today waits for the billing hour, and
/// anything due before today is never held back).
pub fn as_of_for(now: DateTime<Utc>, calendar: &BusinessCalendar, billing_hour: u32) -> NaiveDate {
    let today = calendar.date_of(now);
    if now >= calendar.at_hour(today, billing_hour) {
        today
    } else {
        today.pred_opt().unwrap_or(today)
    }
}

/// Whole days the oldest due job is behind `today` (0 when nothing is overdue).
pub fn lag_days(oldest_due: Option<NaiveDate>, today: NaiveDate) -> i64 {
    oldest_due
        .map(|due| (today - due).num_days().max(0))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pillivery_platform::time::{Clock, ManualClock};
    use proptest::prelude::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn next_dates_cross_month_ends_and_leap_days() {
        let table = [
            ("2026-01-31", 30, "2026-03-02"),
            ("2028-01-31", 30, "2028-03-01"),
            ("2028-02-29", 30, "2028-03-30"),
            ("2028-02-29", 365, "2029-02-28"),
            ("2027-02-28", 365, "2028-02-28"),
            ("2028-02-28", 366, "2029-02-28"),
            ("2026-12-31", 1, "2027-01-01"),
            ("2026-11-30", 31, "2026-12-31"),
            ("2026-04-30", 60, "2026-06-29"),
            ("2026-03-31", 30, "2026-04-30"),
        ];
        for (billed, period, expected) in table {
            assert_eq!(
                next_billing_date(day(billed), period),
                Some(day(expected)),
                "{billed} + {period}"
            );
        }
    }

    #[test]
    fn periods_must_be_positive_and_dates_in_range() {
        assert_eq!(next_billing_date(day("2026-01-01"), 0), None);
        assert_eq!(next_billing_date(day("2026-01-01"), -30), None);
        assert_eq!(next_billing_date(NaiveDate::MAX, 1), None);
        assert_eq!(add_days(NaiveDate::MAX, 1), None);
        assert_eq!(add_days(day("2028-02-28"), 1), Some(day("2028-02-29")));
    }

    #[test]
    fn dates_parse_strictly() {
        let good = [("2026-11-24", "2026-11-24"), ("2028-02-29", "2028-02-29")];
        for (text, expected) in good {
            assert_eq!(parse_date(text), Some(day(expected)), "{text}");
        }
        let bad = [
            "",
            "2026-1-05",
            "2026-01-5",
            "26-01-05",
            "2026/01/05",
            "2027-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-01-05T00:00",
            " 2026-01-05",
            "2026-0a-05",
            "２０２６-01-05",
        ];
        for text in bad {
            assert_eq!(parse_date(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_loop_bills_today_only_once_the_billing_hour_has_come() {
        let seoul = BusinessCalendar::default();
        // 2026-11-30T16:59Z is 01:59 on 12-01 in Seoul; the billing hour is 02:00.
        let clock = ManualClock::starting_at("2026-11-30T16:59:00Z".parse().unwrap());
        let table = [
            (0, day("2026-11-30")),
            (1, day("2026-12-01")),
            // 2026-12-01T14:59Z is 23:59 in Seoul, still the 1st.
            (22 * 60, day("2026-12-01")),
            // 15:00Z is midnight in Seoul: the 2nd, before its billing hour.
            (1 + 22 * 60, day("2026-12-01")),
            (2 + 24 * 60, day("2026-12-02")),
        ];
        let mut moved = 0;
        for (minutes, expected) in table {
            clock.advance(chrono::Duration::minutes(minutes - moved));
            moved = minutes;
            assert_eq!(
                as_of_for(clock.now(), &seoul, 2),
                expected,
                "{}",
                clock.now()
            );
        }
        // Hour 0: the day's own date from its first instant.
        assert_eq!(
            as_of_for("2026-11-30T15:00:00Z".parse().unwrap(), &seoul, 0),
            day("2026-12-01")
        );
    }

    #[test]
    fn lag_is_whole_days_behind_today() {
        let today = day("2026-12-10");
        assert_eq!(lag_days(None, today), 0);
        assert_eq!(lag_days(Some(day("2026-12-10")), today), 0);
        assert_eq!(lag_days(Some(day("2026-12-11")), today), 0);
        assert_eq!(lag_days(Some(day("2026-12-07")), today), 3);
        assert_eq!(lag_days(Some(day("2025-12-10")), today), 365);
    }

    proptest! {
        #[test]
        fn a_cycle_is_exactly_one_period_later(
            offset in 0i64..50_000,
            period in 1i32..=365,
        ) {
            let billed = day("2000-01-01") + chrono::Duration::days(offset);
            let next = next_billing_date(billed, period).unwrap();
            prop_assert_eq!((next - billed).num_days(), i64::from(period));
            prop_assert_eq!(parse_date(&format_date(next)), Some(next));
        }

        #[test]
        fn the_loop_never_bills_ahead_of_the_business_day(
            seconds in 0i64..(20 * 365 * 86_400),
            hour in 0u32..24,
        ) {
            let seoul = BusinessCalendar::default();
            let now = DateTime::<Utc>::from_timestamp(1_700_000_000 + seconds, 0).unwrap();
            let as_of = as_of_for(now, &seoul, hour);
            let today = seoul.date_of(now);
            prop_assert!(as_of == today || Some(as_of) == today.pred_opt());
            prop_assert_eq!(as_of == today, now >= seoul.at_hour(today, hour));
        }
    }
}
