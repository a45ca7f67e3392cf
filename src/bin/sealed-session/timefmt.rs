//! Durations on the command line (`30m`, `1h30m`, `none`), `--now`, and relative times
//! (`in 23m`, `5m ago`).

use std::time::Duration;

use sealed_session::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Units of a duration, largest first, in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `90`, `90s`, `30m`, `1h30m`, `2d`, `500ms` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || {
        format!(
            "{s:?} is not a duration; write it like 30s, 15m, 1h30m, 2d or 500ms (a bare number is seconds)"
        )
    };
    // Runs of digits, each followed by a run of unit letters.
    let digit = |c: char| c.is_ascii_digit();
    if !s.starts_with(digit) || s.ends_with(digit) {
        return Err(bad());
    }
    let numbers = s.split(|c: char| !digit(c)).filter(|n| !n.is_empty());
    let units = s.split(digit).filter(|u| !u.is_empty());
    numbers
        .zip(units)
        .try_fold(0u64, |ms, (n, unit)| {
            let n: u64 = n.parse().map_err(|_| bad())?;
            let (_, per) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?;
            Ok(ms.saturating_add(n.saturating_mul(*per)))
        })
        .map(Duration::from_millis)
}

/// An idle timeout, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idle(pub Option<Duration>);

/// `--idle-timeout`: a duration, or `none`/`off` for no idle timeout.
pub fn parse_idle(s: &str) -> Result<Idle, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" | "off" | "0" => Ok(Idle(None)),
        _ => parse_duration(s).map(|d| Idle(Some(d))),
    }
}

/// `--now`: milliseconds since the epoch, or RFC 3339 (`2025-11-24T16:00:00Z`).
pub fn parse_now(s: &str) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Timestamp::from_millis(ms));
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        format!("{s:?} is neither milliseconds since the epoch nor an RFC 3339 time like 2025-11-24T16:00:00Z")
    })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map(Timestamp::from_millis)
        .map_err(|_| format!("{s:?} is before 1970"))
}

/// A duration in its two largest units: `2d 3h`, `23m 5s`, `45s`, `120ms`.
pub fn human(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // The largest unit that fits, then the next one unless it is zero; milliseconds only
    // below a second.
    let Some(i) = UNITS.iter().position(|(_, per)| ms >= *per) else {
        return "0ms".to_owned();
    };
    let (unit, per) = UNITS[i];
    let mut out = format!("{}{unit}", ms / per);
    if i < 3 {
        let (next, next_per) = UNITS[i + 1];
        let n = ms % per / next_per;
        if n > 0 {
            out.push_str(&format!(" {n}{next}"));
        }
    }
    out
}

/// `t` relative to `now`: `in 23m`, `5m ago`, `now`.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    if t == now {
        "now".to_owned()
    } else if t > now {
        format!("in {}", human(t.saturating_since(now)))
    } else {
        format!("{} ago", human(now.saturating_since(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |s| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(
            [ms("90"), ms("1h30m"), ms("2d")],
            [Ok(90_000), Ok(5_400_000), Ok(172_800_000)]
        );
        for bad in ["1x", "h", "", "1h3", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_idle("off"), Ok(Idle(None)));
    }

    #[test]
    fn times() {
        let t = Timestamp::from_millis(1_764_000_000_000);
        assert_eq!(parse_now("2025-11-24T16:00:00Z"), Ok(t));
        assert!(parse_now("1969-01-01T00:00:00Z").is_err());
        let later = t.saturating_add(Duration::from_secs(23 * 60 + 5));
        assert_eq!(
            [relative(later, t), relative(t, later)],
            ["in 23m 5s", "23m 5s ago"]
        );
        let human = |ms| human(Duration::from_millis(ms));
        assert_eq!(
            [human(172_805_000), human(3_660_000), human(1_500)],
            ["2d", "1h 1m", "1s"]
        );
    }
}
