//! The event generator: realistic SendAuth events of all four types, 300-400 bytes each, each
//! carrying its number in its `transaction_id` (`tx-<n>-...`) so the receiver can tell
//! duplicates, gaps and reordering apart. Deterministic: event `n` is always the same bytes.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

fn mix(mut x: u64) -> u64 {
    // splitmix64: cheap, deterministic variety.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const ORGS: [&str; 4] = [
    "org-5b1d3c7e-2a4f-4e8b-9c6d-1f0e2d3c4b5a",
    "org-0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f",
    "org-7a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d",
    "org-c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f",
];
const PLACES: [(&str, &str, &str); 6] = [
    ("San Francisco", "California", "US"),
    ("Austin", "Texas", "US"),
    ("London", "England", "GB"),
    ("Berlin", "Berlin", "DE"),
    ("Paris", "Ile-de-France", "FR"),
    ("Toronto", "Ontario", "CA"),
];
const SERVICES: [&str; 3] = ["payments-api", "admin-console", "vpn-gateway"];
const ACTIONS: [&str; 4] = ["wire_transfer", "login", "password_reset", "api_key_create"];
const DENY_REASONS: [&str; 3] = ["user_denied", "risk_score_exceeded", "unrecognized_device"];

/// Appends event `i` (one of the four SendAuth types in turn, 300-400 bytes) and its `\n`.
/// Its `transaction_id` is `tx-<i>-<hex>`, which the receiver reads back.
pub fn event_line(i: u64, out: &mut Vec<u8>) {
    let h = mix(i);
    let ms = i % 86_400_000;
    let ts = format!(
        "2025-01-28T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
    let h2 = mix(h);
    let tx = format!(
        "tx-{i}-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        h as u32,
        (h >> 32) as u16,
        (h >> 48) & 0xfff,
        0x8000 | (h2 & 0x3fff),
        h2 >> 16
    );
    let org = ORGS[(h % 4) as usize];
    let subject = format!("user{}@company{}.com", (h >> 8) % 50_000, (h >> 24) % 4);
    let ip = format!("203.0.{}.{}", (h >> 16) % 256, (h >> 40) % 254 + 1);
    let (city, region, country) = PLACES[((h >> 12) % 6) as usize];
    let _ = match i % 4 {
        0 => write!(
            out,
            r#"{{"event_type":"transaction.created","timestamp":"{ts}","transaction_id":"{tx}","org_id":"{org}","requestor":{{"service":"{}","ip_address":"10.20.{}.{}"}},"subject":"{subject}","context":{{"action":"{}","amount":"{}.{:02}","currency":"USD","channel":"web"}}}}"#,
            SERVICES[((h >> 4) % 3) as usize],
            (h >> 20) % 256,
            (h >> 28) % 254 + 1,
            ACTIONS[((h >> 6) % 4) as usize],
            (h >> 10) % 10_000,
            (h >> 36) % 100
        ),
        1 => write!(
            out,
            r#"{{"event_type":"transaction.verified","timestamp":"{ts}","transaction_id":"{tx}","subject":"{subject}","ip_address":"{ip}","location":{{"city":"{city}","region":"{region}","country":"{country}"}},"method":"push","device_id":"dev-{:012x}","org_id":"{org}"}}"#,
            h >> 16
        ),
        2 => write!(
            out,
            r#"{{"event_type":"transaction.denied","timestamp":"{ts}","transaction_id":"{tx}","subject":"{subject}","ip_address":"{ip}","reason":"{}","location":{{"city":"{city}","region":"{region}","country":"{country}"}},"org_id":"{org}"}}"#,
            DENY_REASONS[((h >> 5) % 3) as usize]
        ),
        _ => write!(
            out,
            r#"{{"event_type":"transaction.expired","timestamp":"{ts}","transaction_id":"{tx}","subject":"{subject}","requestor":{{"service":"{}"}},"expires_after_seconds":{},"notified_via":"push","org_id":"{org}"}}"#,
            SERVICES[((h >> 4) % 3) as usize],
            60 * ((h >> 9) % 5 + 1)
        ),
    };
    out.push(b'\n');
}

/// Events `range` as one buffer of lines.
pub fn events_buffer(range: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity((range.end - range.start) as usize * 360);
    for i in range {
        event_line(i, &mut out);
    }
    out
}

/// Writes events `0..n` to `path` (truncating it). Returns the bytes written.
pub fn write_events_file(path: &Path, n: u64) -> anyhow::Result<u64> {
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut total = 0u64;
    let step = 10_000;
    let mut i = 0;
    while i < n {
        let buf = events_buffer(i..(i + step).min(n));
        f.write_all(&buf)?;
        total += buf.len() as u64;
        i += step;
    }
    f.sync_all()?;
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// The counting receiver

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn generated_events_are_valid_realistic_and_cover_all_types() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..400 {
            let mut b = Vec::new();
            event_line(i, &mut b);
            let line = &b[..b.len() - 1];
            assert!((300..=400).contains(&line.len()), "event {i} is {} bytes", line.len());
            sendauth_siem::event::validate(line, 1 << 20).unwrap_or_else(|e| panic!("event {i}: {e}"));
            let v: Value = serde_json::from_slice(line).unwrap();
            seen.insert(v["event_type"].as_str().unwrap().to_string());
            assert!(v["transaction_id"].as_str().unwrap().starts_with(&format!("tx-{i}-")));
        }
        assert_eq!(seen.len(), 4);
    }
}
