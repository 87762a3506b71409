//! Time as the services see it: a [`Clock`] that tests can move by hand, and the
//! [`BusinessCalendar`] that turns instants into the shop's dates.
//!
//! Billing dates, the day a view is counted on and "orders unpaid for 30 minutes" are all
//! questions about time. Asking [`Clock::now`] instead of `Utc::now()` lets a test jump a month
//! ahead without sleeping; asking [`BusinessCalendar::date_of`] instead of `date_naive()` keeps
//! every date in the business time zone (SPEC section 2: default `Asia/Seoul`), so a payment at
//! 01:00 in Seoul on the 1st is billed on the 1st, not on the UTC date (the 31st).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: tests of deadlines and schedules use it instead of
/// sleeping. Clones share one time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn starting_at(now: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(now)))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The clock a service uses, shared by its tasks.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a [`SharedClock`].
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// The business time zone, by IANA name (`Asia/Seoul`). In configuration it is that name as a
/// string; an unknown name is a configuration error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusinessCalendar {
    zone: Tz,
}

impl Default for BusinessCalendar {
    fn default() -> Self {
        BusinessCalendar {
            zone: chrono_tz::Asia::Seoul,
        }
    }
}

impl FromStr for BusinessCalendar {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        name.parse::<Tz>()
            .map(|zone| BusinessCalendar { zone })
            .map_err(|_| format!("unknown time zone `{name}` (use an IANA name like Asia/Seoul)"))
    }
}

impl fmt::Display for BusinessCalendar {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.zone.name())
    }
}

impl Serialize for BusinessCalendar {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.zone.name())
    }
}

impl<'de> Deserialize<'de> for BusinessCalendar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl BusinessCalendar {
    /// The business date of an instant.
    pub fn date_of(&self, instant: DateTime<Utc>) -> NaiveDate {
        instant.with_timezone(&self.zone).date_naive()
    }

    /// The instant a business date starts (its first local minute, should a zone skip
    /// midnight for daylight saving).
    pub fn start_of(&self, date: NaiveDate) -> DateTime<Utc> {
        self.local_instant(date, NaiveTime::MIN)
    }

    /// The instant `hour:00` local time on `date` (the scheduler's billing hour). An hour a
    /// daylight-saving jump skips maps to the first instant after the gap; an hour that occurs
    /// twice maps to the first occurrence.
    pub fn at_hour(&self, date: NaiveDate, hour: u32) -> DateTime<Utc> {
        let time = NaiveTime::from_hms_opt(hour.min(23), 0, 0).unwrap_or(NaiveTime::MIN);
        self.local_instant(date, time)
    }

    fn local_instant(&self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        let mut local = date.and_time(time);
        // A gap is at most a few hours; walk forward minute by minute out of it.
        for _ in 0..(24 * 60) {
            match self.zone.from_local_datetime(&local) {
                LocalResult::Single(instant) | LocalResult::Ambiguous(instant, _) => {
                    return instant.with_timezone(&Utc);
                }
                LocalResult::None => local += Duration::minutes(1),
            }
        }
        Utc.from_utc_datetime(&date.and_time(time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn dates_are_taken_in_the_business_zone() {
        let seoul = BusinessCalendar::default();
        // 2026-11-30T16:30Z is 01:30 on 12-01 in Seoul (UTC+9).
        assert_eq!(
            seoul.date_of(instant("2026-11-30T16:30:00Z")),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
        assert_eq!(
            seoul.date_of(instant("2026-11-30T14:59:59Z")),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
        );
        let utc: BusinessCalendar = "UTC".parse().unwrap();
        assert_eq!(
            utc.date_of(instant("2026-11-30T16:30:00Z")),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
        );
    }

    #[test]
    fn day_starts_and_billing_hours_are_local() {
        let seoul = BusinessCalendar::default();
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(seoul.start_of(day), instant("2026-11-30T15:00:00Z"));
        assert_eq!(seoul.at_hour(day, 2), instant("2026-11-30T17:00:00Z"));
        // New York skips 02:00–03:00 on 2026-03-08.
        let new_york: BusinessCalendar = "America/New_York".parse().unwrap();
        let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(new_york.at_hour(spring, 2), instant("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn zones_are_configured_by_iana_name() {
        let parsed: BusinessCalendar = serde_json::from_str("\"Asia/Seoul\"").unwrap();
        assert_eq!(parsed, BusinessCalendar::default());
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            "\"Asia/Seoul\"".to_owned()
        );
        let unknown = serde_json::from_str::<BusinessCalendar>("\"Mars/Olympus\"").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown time zone"),
            "{unknown}"
        );
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_at(instant("2026-11-24T00:00:00Z"));
        let shared: SharedClock = Arc::new(clock.clone());
        assert_eq!(shared.now(), instant("2026-11-24T00:00:00Z"));
        clock.advance(Duration::minutes(31));
        assert_eq!(shared.now(), instant("2026-11-24T00:31:00Z"));
        clock.set(instant("2027-01-01T00:00:00Z"));
        assert_eq!(shared.now(), instant("2027-01-01T00:00:00Z"));
    }
}
