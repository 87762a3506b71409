//! Subscriptions: billing dates, changes and the status machine (SPEC section 5).
//!
//! All dates are business dates (the shop's time zone, `BusinessCalendar`), plain days with no
//! time of day, so "30 days later" is calendar arithmetic: Jan 31 + 30 days is Mar 2 (Mar 1 in a
//! leap year), never "the same day next month".
//!
//! - The first payment (cycle 0) fixes `anchorDate` = its business date, `lastBilledDate` =
//!   `anchorDate`, `nextBillingDate` = `anchorDate + periodDays`.
//! - A renewal of cycle n, due on `billedDate`, sets `lastBilledDate = billedDate` and
//!   `nextBillingDate = billedDate + periodDays`.
//! - Changing `periodDays` sets `nextBillingDate = lastBilledDate + newPeriod`. That date may be
//!   today or already past: it stays as it is (the scheduler bills every subscription whose date
//!   is on or before today at its next run), so a change can never push billing into the past
//!   forever. Changing `quantity` leaves every date alone; the next charge bills the new
//!   quantity at the locked unit price.
//!
//! ```text
//! ACTIVE ──renewal failed──▶ PAST_DUE ──retry succeeded──▶ ACTIVE
//!   │                          └──retries exhausted──▶ SUSPENDED
//!   └──customer cancel (also from PAST_DUE)──▶ CANCELED
//! ```

use chrono::{Days, NaiveDate};
use pillivery_platform::error::{FieldViolation, Text};

use super::line::{check_period_days, check_quantity, checked};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionStatus {
    Active,
    PastDue,
    Suspended,
    Canceled,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 4] = [
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Suspended,
        SubscriptionStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "ACTIVE",
            SubscriptionStatus::PastDue => "PAST_DUE",
            SubscriptionStatus::Suspended => "SUSPENDED",
            SubscriptionStatus::Canceled => "CANCELED",
        }
    }

    pub fn parse(value: &str) -> Option<SubscriptionStatus> {
        SubscriptionStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// Still billed: the customer may change it, a renewal may be recorded.
    pub fn is_billable(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue
        )
    }

    /// The customer stops it (also what a withdrawal does).
    pub fn cancel(self) -> Result<SubscriptionStatus, InvalidSubscriptionState> {
        if self.is_billable() {
            Ok(SubscriptionStatus::Canceled)
        } else {
            Err(InvalidSubscriptionState(self))
        }
    }

    /// A renewal charge went through: a PAST_DUE subscription is active again.
    pub fn after_renewal(self) -> Result<SubscriptionStatus, InvalidSubscriptionState> {
        if self.is_billable() {
            Ok(SubscriptionStatus::Active)
        } else {
            Err(InvalidSubscriptionState(self))
        }
    }

    /// A renewal charge failed: PAST_DUE while retries remain, SUSPENDED when `last` says they
    /// are exhausted. A SUSPENDED subscription hearing its final failure again stays SUSPENDED
    /// (a repeated report); a CANCELED one is never billed, so a failure there is refused.
    pub fn after_failed_renewal(
        self,
        last: bool,
    ) -> Result<SubscriptionStatus, InvalidSubscriptionState> {
        match (self, last) {
            (SubscriptionStatus::Active | SubscriptionStatus::PastDue, false) => {
                Ok(SubscriptionStatus::PastDue)
            }
            (SubscriptionStatus::Active | SubscriptionStatus::PastDue, true) => {
                Ok(SubscriptionStatus::Suspended)
            }
            (SubscriptionStatus::Suspended, true) => Ok(SubscriptionStatus::Suspended),
            (status, _) => Err(InvalidSubscriptionState(status)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the subscription is {0:?}")]
pub struct InvalidSubscriptionState(pub SubscriptionStatus);

/// The three dates of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BillingDates {
    /// The date of the first payment.
    pub anchor: NaiveDate,
    pub last_billed: NaiveDate,
    pub next_billing: NaiveDate,
}

/// A date out of the calendar's range (year 262 143): only reachable with absurd input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("date out of range")]
pub struct DateOutOfRange;

/// `date + days` in calendar days.
pub fn add_days(date: NaiveDate, days: i32) -> Result<NaiveDate, DateOutOfRange> {
    let days = u64::try_from(days).map_err(|_| DateOutOfRange)?;
    date.checked_add_days(Days::new(days)).ok_or(DateOutOfRange)
}

impl BillingDates {
    /// The dates after the first payment, made on business date `paid_on`.
    pub fn first(paid_on: NaiveDate, period_days: i32) -> Result<BillingDates, DateOutOfRange> {
        Ok(BillingDates {
            anchor: paid_on,
            last_billed: paid_on,
            next_billing: add_days(paid_on, period_days)?,
        })
    }

    /// The dates after the period changed to `period_days`. The next date may land today or in
    /// the past; it is kept, so the next scheduler run bills it.
    pub fn with_period(self, period_days: i32) -> Result<BillingDates, DateOutOfRange> {
        Ok(BillingDates {
            next_billing: add_days(self.last_billed, period_days)?,
            ..self
        })
    }

    /// The dates after the cycle due on `billed_on` was charged.
    pub fn after_renewal(
        self,
        billed_on: NaiveDate,
        period_days: i32,
    ) -> Result<BillingDates, DateOutOfRange> {
        Ok(BillingDates {
            anchor: self.anchor,
            last_billed: billed_on,
            next_billing: add_days(billed_on, period_days)?,
        })
    }
}

/// How a renewal report of `cycle` relates to a subscription whose last billed cycle is
/// `current`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CycleCheck {
    /// The next cycle: record it.
    Next,
    /// Already recorded: answer the first result.
    AlreadyRecorded,
    /// Neither: a cycle was skipped or the number is nonsense.
    OutOfOrder,
}

pub fn check_cycle(current: i32, reported: i32) -> CycleCheck {
    if current.checked_add(1) == Some(reported) {
        CycleCheck::Next
    } else if (1..=current).contains(&reported) {
        CycleCheck::AlreadyRecorded
    } else {
        CycleCheck::OutOfOrder
    }
}

/// A validated customer change; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub period_days: Option<i32>,
    pub quantity: Option<i32>,
}

impl SubscriptionChange {
    pub fn validate(
        period_days: Option<i32>,
        quantity: Option<i32>,
    ) -> Result<SubscriptionChange, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let period_days =
            period_days.map(|days| checked(&mut violations, "periodDays", days, check_period_days));
        let quantity =
            quantity.map(|quantity| checked(&mut violations, "quantity", quantity, check_quantity));
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(SubscriptionChange {
            period_days: period_days.flatten(),
            quantity: quantity.flatten(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.period_days.is_none() && self.quantity.is_none()
    }
}

/// A subscription's terms and dates as they are before and after a customer change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terms {
    pub period_days: i32,
    pub quantity: i32,
    pub dates: BillingDates,
}

impl Terms {
    /// Applies `change`: a new period moves the next date (see the module docs); a quantity
    /// changes only the quantity. An unchanged period leaves the dates alone, so repeating a
    /// change is harmless.
    pub fn changed(self, change: SubscriptionChange) -> Result<Terms, DateOutOfRange> {
        let mut terms = self;
        if let Some(quantity) = change.quantity {
            terms.quantity = quantity;
        }
        if let Some(period_days) = change.period_days
            && period_days != self.period_days
        {
            terms.period_days = period_days;
            terms.dates = self.dates.with_period(period_days)?;
        }
        Ok(terms)
    }
}

/// The reason text of a refused subscription change, for the error mapping.
pub fn invalid_state_text() -> Text {
    Text::new(
        "현재 상태에서는 할 수 없는 구독 변경입니다.",
        "The subscription cannot do this in its current status.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn first_payments_anchor_the_dates() {
        let table = [
            ("2026-01-01", 30, "2026-01-31"),
            ("2026-01-31", 30, "2026-03-02"),
            ("2028-01-31", 30, "2028-03-01"), // leap year: Feb has 29 days
            ("2028-02-29", 30, "2028-03-30"),
            ("2028-02-29", 365, "2029-02-28"),
            ("2027-02-28", 365, "2028-02-28"),
            ("2026-12-15", 30, "2027-01-14"),
            ("2026-03-31", 61, "2026-05-31"),
            ("2024-02-29", 366 - 1, "2025-02-28"),
        ];
        for (paid, period, next) in table {
            let dates = BillingDates::first(date(paid), period).unwrap();
            assert_eq!(dates.anchor, date(paid));
            assert_eq!(dates.last_billed, date(paid));
            assert_eq!(dates.next_billing, date(next), "{paid} + {period}");
        }
    }

    #[test]
    fn renewals_count_from_the_billed_date() {
        let table = [
            // (last billed, billed, period, next)
            ("2026-01-01", "2026-01-31", 30, "2026-03-02"),
            ("2028-01-30", "2028-02-29", 30, "2028-03-30"),
            // billed late (a run was missed): the next date counts from the due date, so the
            // customer keeps the rhythm and missed days are caught up, not skipped.
            ("2026-01-01", "2026-01-31", 30, "2026-03-02"),
            ("2026-11-01", "2026-12-01", 31, "2027-01-01"),
        ];
        for (last, billed, period, next) in table {
            let dates = BillingDates::first(date(last), period)
                .unwrap()
                .after_renewal(date(billed), period)
                .unwrap();
            assert_eq!(dates.anchor, date(last));
            assert_eq!(dates.last_billed, date(billed));
            assert_eq!(dates.next_billing, date(next), "{billed} + {period}");
        }
    }

    #[test]
    fn period_changes_count_from_the_last_billed_date() {
        let dates = BillingDates::first(date("2026-01-01"), 60).unwrap();
        assert_eq!(dates.next_billing, date("2026-03-02"));
        let table = [
            (30, "2026-01-31"),
            (45, "2026-02-15"),
            (90, "2026-04-01"),
            (365, "2027-01-01"),
        ];
        for (period, next) in table {
            let changed = dates.with_period(period).unwrap();
            assert_eq!(changed.next_billing, date(next), "{period}");
            assert_eq!(changed.last_billed, dates.last_billed);
            assert_eq!(changed.anchor, dates.anchor);
        }
    }

    #[test]
    fn a_period_change_may_land_in_the_past_and_stays_due() {
        // Last billed Jan 1 with 90 days; on Mar 15 the customer switches to 30 days: the new
        // date (Jan 31) is past. It is kept as is, so `next_billing <= today` and the next run
        // bills it; it is never moved forward past today (which would skip the cycle).
        let today = date("2026-03-15");
        let dates = BillingDates::first(date("2026-01-01"), 90).unwrap();
        let changed = dates.with_period(30).unwrap();
        assert_eq!(changed.next_billing, date("2026-01-31"));
        assert!(changed.next_billing <= today);
        // And a change landing exactly today is due today.
        let today = date("2026-01-31");
        assert_eq!(dates.with_period(30).unwrap().next_billing, today);
    }

    #[test]
    fn terms_change_only_what_was_asked() {
        let dates = BillingDates::first(date("2026-01-31"), 30).unwrap();
        let terms = Terms {
            period_days: 30,
            quantity: 2,
            dates,
        };
        let quantity_only = terms
            .changed(SubscriptionChange {
                period_days: None,
                quantity: Some(5),
            })
            .unwrap();
        assert_eq!(quantity_only.quantity, 5);
        assert_eq!(
            quantity_only.dates, dates,
            "a quantity change moves no date"
        );
        let same_period = terms
            .changed(SubscriptionChange {
                period_days: Some(30),
                quantity: None,
            })
            .unwrap();
        assert_eq!(same_period, terms);
        let both = terms
            .changed(SubscriptionChange {
                period_days: Some(60),
                quantity: Some(1),
            })
            .unwrap();
        assert_eq!(both.period_days, 60);
        assert_eq!(both.quantity, 1);
        assert_eq!(both.dates.next_billing, date("2026-04-01"));
    }

    #[test]
    fn changes_are_validated() {
        assert_eq!(
            SubscriptionChange::validate(Some(30), Some(99)),
            Ok(SubscriptionChange {
                period_days: Some(30),
                quantity: Some(99)
            })
        );
        assert!(SubscriptionChange::validate(None, None).unwrap().is_empty());
        let violations = SubscriptionChange::validate(Some(29), Some(0)).unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["periodDays", "quantity"]);
        assert_eq!(
            SubscriptionChange::validate(Some(366), None)
                .unwrap_err()
                .len(),
            1
        );
    }

    #[test]
    fn the_status_machine() {
        use SubscriptionStatus::*;
        let table = [
            // (from, cancel, renewal, failure, final failure)
            (Active, Ok(Canceled), Ok(Active), Ok(PastDue), Ok(Suspended)),
            (
                PastDue,
                Ok(Canceled),
                Ok(Active),
                Ok(PastDue),
                Ok(Suspended),
            ),
            (
                Suspended,
                Err(InvalidSubscriptionState(Suspended)),
                Err(InvalidSubscriptionState(Suspended)),
                Err(InvalidSubscriptionState(Suspended)),
                Ok(Suspended),
            ),
            (
                Canceled,
                Err(InvalidSubscriptionState(Canceled)),
                Err(InvalidSubscriptionState(Canceled)),
                Err(InvalidSubscriptionState(Canceled)),
                Err(InvalidSubscriptionState(Canceled)),
            ),
        ];
        for (from, cancel, renewal, failure, last) in table {
            assert_eq!(from.cancel(), cancel, "{from:?} cancel");
            assert_eq!(from.after_renewal(), renewal, "{from:?} renewal");
            assert_eq!(
                from.after_failed_renewal(false),
                failure,
                "{from:?} failure"
            );
            assert_eq!(from.after_failed_renewal(true), last, "{from:?} final");
            assert_eq!(SubscriptionStatus::parse(from.as_str()), Some(from));
        }
    }

    #[test]
    fn cycles_must_come_in_order() {
        let table = [
            (0, 1, CycleCheck::Next),
            (0, 0, CycleCheck::OutOfOrder),
            (0, 2, CycleCheck::OutOfOrder),
            (3, 4, CycleCheck::Next),
            (3, 3, CycleCheck::AlreadyRecorded),
            (3, 1, CycleCheck::AlreadyRecorded),
            (3, 5, CycleCheck::OutOfOrder),
            (3, -1, CycleCheck::OutOfOrder),
            (i32::MAX, 1, CycleCheck::AlreadyRecorded),
        ];
        for (current, reported, expected) in table {
            assert_eq!(
                check_cycle(current, reported),
                expected,
                "{current} {reported}"
            );
        }
    }

    proptest! {
        /// However renewals and period changes interleave, the next date is always the last
        /// billed date plus the current period, and the last billed date never goes back.
        #[test]
        fn next_is_always_last_plus_period(
            start in 0i64..20_000,
            steps in proptest::collection::vec((any::<bool>(), 30i32..=365, 0i32..400), 0..30),
        ) {
            let paid = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + chrono::Days::new(start as u64);
            let mut period = 30;
            let mut dates = BillingDates::first(paid, period).unwrap();
            for (renew, new_period, lateness) in steps {
                let before = dates;
                if renew {
                    let billed = add_days(dates.next_billing, lateness.min(3)).unwrap();
                    let billed = billed.max(dates.last_billed);
                    dates = dates.after_renewal(billed, period).unwrap();
                    prop_assert!(dates.last_billed >= before.last_billed);
                } else {
                    period = new_period;
                    dates = dates.with_period(period).unwrap();
                    prop_assert_eq!(dates.last_billed, before.last_billed);
                }
                prop_assert_eq!(dates.anchor, paid);
                prop_assert_eq!(dates.next_billing, add_days(dates.last_billed, period).unwrap());
                prop_assert!(dates.next_billing > dates.last_billed);
            }
        }
    }
}
