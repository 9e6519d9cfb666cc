//! Cron schedules of pull sources: 5 fields (minute precision) or 6 (a leading seconds
//! field), in UTC, parsed with `croner` (which also accepts `@hourly`-style nicknames, `L`,
//! `#` and `W`). `ferry validate` and the hub's puller parse them the same way.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

impl Schedule {
    /// Parse `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "a cron schedule has 5 fields (minute hour day-of-month month day-of-week) or 6 \
                 (with a leading seconds field), not {fields}"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("invalid cron schedule `{text}`: {e}"))?;
        // A pattern that never matches (e.g. 30 February) is refused now, not at run time.
        let schedule = Schedule {
            cron,
            text: text.to_owned(),
        };
        match schedule.next_after(0) {
            Some(_) => Ok(schedule),
            None => Err(format!("the cron schedule `{text}` never runs")),
        }
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first run time strictly after `after` (epoch milliseconds), if there is one.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start: DateTime<Utc> = DateTime::from_timestamp_millis(after)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn five_and_six_fields() {
        let every_5m = Schedule::parse("*/5 * * * *").expect("5 fields");
        assert_eq!(every_5m.next_after(0), Some(5 * MIN));
        assert_eq!(every_5m.next_after(5 * MIN), Some(10 * MIN));
        assert_eq!(every_5m.next_after(5 * MIN - 1), Some(5 * MIN));
        let every_2s = Schedule::parse("*/2 * * * * *").expect("6 fields");
        assert_eq!(every_2s.next_after(1_000), Some(2_000));
        assert_eq!(every_2s.as_str(), "*/2 * * * * *");
        let hourly = Schedule::parse("@hourly").expect("nickname");
        assert_eq!(hourly.next_after(1), Some(60 * MIN));
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "* * 30 2 *",
            "every day",
        ] {
            let err = Schedule::parse(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
    }
}
