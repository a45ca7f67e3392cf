//! Durations on the command line (`30m`, `1h30m`, `none`), `--now`, and relative times
//! (`in 23m`, `5m ago`).

use std::time::Duration;

use sealed_session::Timestamp;

/// Parses `90`, `90s`, `30m`, `1h30m`, `2d`, `500ms` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a duration; write it like 30s, 15m, 1h30m, 2d or 500ms (a bare number is seconds)"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let ms_per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        total = total.saturating_add(Duration::from_millis(n.saturating_mul(ms_per)));
        rest = tail;
    }
    Ok(total)
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
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            format!("{s:?} is neither milliseconds since the epoch nor an RFC 3339 time like 2025-11-24T16:00:00Z")
        })?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms)
        .map(Timestamp::from_millis)
        .map_err(|_| format!("{s:?} is before 1970"))
}

/// A duration in its two largest units: `2d 3h`, `23m 5s`, `45s`, `120ms`.
pub fn human(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let units = [
        ("d", 86_400_000u64),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ];
    let mut parts = Vec::new();
    let mut rest = ms;
    for (name, size) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || !parts.is_empty() {
            parts.push((n, name));
        }
    }
    parts
        .into_iter()
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n}{name}"))
        .collect::<Vec<_>>()
        .join(" ")
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
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(parse_idle("none"), Ok(Idle(None)));
    }

    #[test]
    fn now_forms() {
        assert_eq!(
            parse_now("2025-11-24T16:00:00Z"),
            Ok(Timestamp::from_millis(1_764_000_000_000))
        );
        assert_eq!(parse_now("5"), Ok(Timestamp::from_millis(5)));
        assert!(parse_now("1969-01-01T00:00:00Z").is_err());
        assert!(parse_now("yesterday").is_err());
    }

    #[test]
    fn relative_times() {
        let now = Timestamp::from_millis(10_000_000);
        let later = now.saturating_add(Duration::from_secs(23 * 60 + 5));
        assert_eq!(relative(later, now), "in 23m 5s");
        assert_eq!(relative(now, later), "23m 5s ago");
        assert_eq!(relative(now, now), "now");
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 5)), "2d");
        assert_eq!(human(Duration::from_secs(3600 + 60)), "1h 1m");
    }
}
