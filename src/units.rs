//! Human units for durations and sizes (`250ms`, `1h30m`, `512KiB`, `1GB`), shared by the
//! config reader and the command line (`--timeout`, the bench's flags). Plain functions with no
//! dependency on the rest of the crate, so any module can use them without an import circle.
//!
//! Invariants:
//! - a duration needs a unit: a bare number is refused with the spelling probably meant;
//! - every error is a sentence quoting what was given and an example of what is accepted.

use std::time::Duration;

/// Parses human durations with `humantime`: `250ms`, `10s`, `10 seconds`, `2m`, `1h30m`,
/// `1day`. A unit is required: a bare `30` is refused (seconds? milliseconds?) with the
/// spelling that was probably meant.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{t:?} has no unit; write it with one, e.g. {t}s or {t}ms"));
    }
    let d = humantime::parse_duration(t).map_err(|e| format!("expected a duration like 250ms, 10s, 2m or 1h30m, got {s:?} ({e})"))?;
    if d > Duration::from_secs(86_400 * 365) {
        return Err(format!("duration {s:?} is out of range (at most a year)"));
    }
    Ok(d)
}

/// Parses sizes: `1MiB`, `512KiB`, `1GB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a size like 512KiB, 1MiB or 2GB, got {s:?}"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown size unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 / 2.0 {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_duration("10 seconds").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        let bare = parse_duration("30").unwrap_err();
        assert!(bare.contains("30s"), "{bare}");
        assert_eq!(parse_size("1MiB").unwrap(), 1024 * 1024);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert!(parse_size("1 parsec").is_err());
    }
}
