//! Value types that check their own syntax while the file is deserialized, so that an error
//! carries the exact span of the value.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use whittle_planner::targets::ArnPattern;

/// Implements `Deserialize` through `FromStr`, reporting the parse error as a custom error so
/// toml attaches the value's span to it.
macro_rules! deserialize_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(de::Error::custom)
            }
        }
    };
}

/// A cron expression with a seconds field, as the scheduler reads it.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    cron: croner::Cron,
}

impl CronSchedule {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// Fails when the expression has no occurrence within [`FIRES_WITHIN_YEARS`] after
    /// `from` (`0 0 0 31 2 *`, or a year field in the past): the scheduler would wait for it
    /// forever.
    pub fn check_fires(&self, from: chrono::DateTime<chrono::Utc>) -> Result<(), String> {
        let horizon = from + chrono::Duration::days(FIRES_WITHIN_YEARS * 366);
        match self.next_after(from) {
            Some(next) if next <= horizon => Ok(()),
            _ => Err(format!(
                "cron expression `{}` never fires: it has no occurrence in the next {FIRES_WITHIN_YEARS} years; check the day-of-month, month and year fields",
                self.text
            )),
        }
    }

    /// The shortest time between two consecutive occurrences among the first
    /// [`GAP_SAMPLES`] after `from`, or None when it fires at most once in them. Enough
    /// samples cover a pattern's whole cycle, leap days included (`0 0 0 28,29 2 *`).
    pub fn shortest_gap(&self, from: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let mut previous = self.next_after(from)?;
        let mut shortest: Option<Duration> = None;
        for _ in 1..GAP_SAMPLES {
            let Some(next) = self.next_after(previous) else {
                break;
            };
            let gap = (next - previous).to_std().unwrap_or_default();
            shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
            previous = next;
        }
        shortest
    }
}

/// A cron expression must fire at least once within this many years.
pub const FIRES_WITHIN_YEARS: i64 = 10;

/// How many consecutive occurrences [`CronSchedule::shortest_gap`] looks at.
const GAP_SAMPLES: usize = 1000;

/// The parser tokio-cron-scheduler uses (see its `Job::new_async_tz`): seconds required, and
/// day-of-month and day-of-week both required to match. Using the same settings here means an
/// expression `validate` accepts is one the scheduler accepts, with croner's own error message
/// instead of the scheduler's bare "ParseSchedule".
fn cron_parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
}

impl FromStr for CronSchedule {
    type Err = String;
    /// Parses the expression and checks that it fires within [`FIRES_WITHIN_YEARS`] from
    /// now.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let schedule = cron_parser()
            .parse(text)
            .map(|cron| CronSchedule { text: text.to_owned(), cron })
            .map_err(|e| {
                format!(
                    "invalid cron expression `{text}`: {e}; expected 6 fields `sec min hour day-of-month month day-of-week`, e.g. `0 */15 * * * *`"
                )
            })?;
        schedule.check_fires(chrono::Utc::now())?;
        Ok(schedule)
    }
}
deserialize_from_str!(CronSchedule);

/// A duration written the human way: `30s`, `5m`, `1h 30m`, `7days`; at most
/// [`HumanDuration::LONGEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// No timeout, delay, window or jitter in the file is longer than this; anything longer
    /// (`18446744073709551615s`) is a mistake that would make a job wait forever.
    pub const LONGEST: Duration = Duration::from_secs(10 * 31_557_600);
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let duration = humantime::parse_duration(text).map_err(|e| {
            format!("invalid duration `{text}`: {e}; write it like `30s`, `5m` or `1h 30m`")
        })?;
        if duration > Self::LONGEST {
            return Err(format!(
                "invalid duration `{text}`: longer than 10 years; write it like `30s`, `5m` or `1h 30m`"
            ));
        }
        Ok(HumanDuration(duration))
    }
}
deserialize_from_str!(HumanDuration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountId(pub String);

impl FromStr for AccountId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(text.to_owned()))
        } else {
            Err(format!(
                "invalid account id `{text}`: an AWS account id is exactly 12 digits, written as a string"
            ))
        }
    }
}
deserialize_from_str!(AccountId);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An http(s) URL for an endpoint override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(pub String);

impl FromStr for EndpointUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // scheme://host[:port][/path], with a host made of URL-safe characters.
        let host = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            .map(|rest| rest.split('/').next().unwrap_or_default());
        let valid_host = |host: &str| {
            !host.is_empty()
                && !host.starts_with(':')
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c))
                && host.rsplit_once(':').is_none_or(|(_, port)| {
                    port.is_empty() || port.parse::<u16>().is_ok() || port.ends_with(']')
                })
        };
        match host {
            Some(host) if valid_host(host) => {
                Ok(EndpointUrl(text.trim_end_matches('/').to_owned()))
            }
            _ => Err(format!(
                "invalid endpoint URL `{text}`: write it as http://HOST:PORT or https://HOST"
            )),
        }
    }
}
deserialize_from_str!(EndpointUrl);

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A socket address on a loopback interface. The status endpoint's reports are open to any
/// process that reaches it (only handing work over needs the lock file's token), so
/// it is never exposed beyond the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopbackAddr(pub SocketAddr);

impl FromStr for LoopbackAddr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let addr: SocketAddr = text.parse().map_err(|_| {
            format!("invalid address `{text}`: write it as IP:PORT, e.g. `127.0.0.1:9187`")
        })?;
        if addr.ip().is_loopback() {
            Ok(LoopbackAddr(addr))
        } else {
            Err(format!(
                "address `{text}` is not a loopback address: the status endpoint serves its reports to anyone who reaches it, so it listens on 127.0.0.1 or [::1] only"
            ))
        }
    }
}
deserialize_from_str!(LoopbackAddr);

impl fmt::Display for LoopbackAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ARN glob, checked while reading.
#[derive(Debug, Clone)]
pub struct Pattern(pub ArnPattern);

impl FromStr for Pattern {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ArnPattern::new(text)
            .map(Pattern)
            .map_err(|e| e.to_string())
    }
}
deserialize_from_str!(Pattern);
