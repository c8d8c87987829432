//! The `delivery:` section: retries, backoff, what happens when retries run out, linger and
//! how many requests may be in flight.

use std::time::Duration;

use super::reader::Node;
use crate::sink::settings::{DeliveryConfig, MaxInFlight, OnRetryExhausted, DEFAULT_LINGER, MAX_IN_FLIGHT};

/// The optional `delivery:` section (defaults when absent).
pub(super) fn parse_delivery_section(root: &mut Node) -> Option<DeliveryConfig> {
    let mut n = root.child("delivery");
    let d = parse_delivery(n.as_mut());
    if let Some(n) = n {
        n.finish();
    }
    d
}

fn parse_delivery(n: Option<&mut Node>) -> Option<DeliveryConfig> {
    let mut d = DeliveryConfig {
        max_retries: 3,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(30),
        on_retry_exhausted: OnRetryExhausted::Hold,
        linger: DEFAULT_LINGER,
        max_in_flight: MaxInFlight::Auto,
    };
    if let Some(n) = n {
        d.max_retries = n.uint("max_retries", 3, 0, 1000) as u32;
        d.initial_backoff = n.duration("initial_backoff", d.initial_backoff);
        d.max_backoff = n.duration("max_backoff", d.max_backoff);
        d.on_retry_exhausted = n.choice(
            "on_retry_exhausted",
            OnRetryExhausted::Hold,
            &[("hold", OnRetryExhausted::Hold), ("dead_letter", OnRetryExhausted::DeadLetter)],
        );
        d.linger = n.duration("linger", DEFAULT_LINGER);
        d.max_in_flight = match n.string("max_in_flight") {
            None => MaxInFlight::Auto,
            Some(s) if s.trim() == "auto" => MaxInFlight::Auto,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(v) if (1..=MAX_IN_FLIGHT).contains(&v) => MaxInFlight::Fixed(v),
                _ => {
                    n.err(
                        "max_in_flight",
                        format!("expected auto or a whole number from 1 to {MAX_IN_FLIGHT} (1 keeps strict arrival order), got {s:?}"),
                    );
                    MaxInFlight::Auto
                }
            },
        };
        if d.initial_backoff.is_zero() {
            n.err("initial_backoff", "must be greater than 0");
        }
        if d.max_backoff < d.initial_backoff {
            n.err("max_backoff", "must be at least delivery.initial_backoff");
        }
        if d.linger > Duration::from_secs(60) {
            n.err("linger", "must be at most 60s");
        }
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::settings::Config;
    use crate::sink::settings::{MaxInFlight, DEFAULT_LINGER};

    #[test]
    fn delivery_max_in_flight_is_auto_or_a_bounded_number() {
        let base = "siem:\n  url: https://x.example.com/c\nsources:\n  socket: { path: /s }\nqueue:\n  path: /q\n";
        let parse = |extra: &str| Config::parse_with_env(&format!("{base}{extra}"), &|_| None);
        let c = parse("").unwrap();
        assert_eq!(c.delivery.max_in_flight, MaxInFlight::Auto);
        assert_eq!(c.delivery.linger, DEFAULT_LINGER);
        assert_eq!(
            parse("delivery:\n  max_in_flight: auto\n").unwrap().delivery.max_in_flight,
            MaxInFlight::Auto
        );
        assert_eq!(
            parse("delivery:\n  max_in_flight: 1\n").unwrap().delivery.max_in_flight,
            MaxInFlight::Fixed(1)
        );
        assert_eq!(
            parse("delivery:\n  max_in_flight: 256\n").unwrap().delivery.max_in_flight,
            MaxInFlight::Fixed(256)
        );
        assert_eq!(parse("delivery:\n  linger: 0s\n").unwrap().delivery.linger, Duration::ZERO);
        for bad in ["0", "257", "-1", "lots", "1.5"] {
            let e = parse(&format!("delivery:\n  max_in_flight: {bad}\n")).unwrap_err().to_string();
            assert!(
                e.contains("delivery.max_in_flight: expected auto or a whole number from 1 to 256"),
                "{bad}: {e}"
            );
        }
    }
}
