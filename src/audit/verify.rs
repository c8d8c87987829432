//! `sendauth-siem audit verify FILE`: reads an NDJSON export from the SIEM and reports, per
//! agent, the sequence numbers missing (as ranges), the duplicates, and which gaps the
//! heartbeats' dead-letter counts explain (see the parent module for why those are the only
//! legitimate gaps).
//!
//! Accepted lines: Splunk search exports (`{"result":{...}}`, reading `_raw` when it is JSON,
//! else the extracted fields, dotted `sendauth_siem.seq` or the indexed `sendauth_siem_seq`),
//! Elasticsearch hits (`{"_source":{...}}`, or a whole search answer with `hits.hits`), and the
//! events themselves, in any schema. Order does not matter. Lines without the stamp are counted
//! and otherwise ignored; sequence number 0 (the `test` command's event) is ignored.
//!
//! Explaining gaps: a dead letter happens after its event was appended, so it is reported by a
//! heartbeat with a higher sequence number. Missing numbers are matched, lowest first, against
//! the `dead_lettered` counts of the heartbeats that follow them; what no count covers is
//! unexplained, and the exit code is 1.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde_json::Value;

use crate::schema::AGENT_NS;

#[derive(Debug, Default)]
struct Agent {
    /// Every sequence number seen, with how often.
    seen: BTreeMap<u64, u64>,
    /// Heartbeats: seq → dead-lettered count.
    heartbeats: BTreeMap<u64, u64>,
    processes: BTreeSet<String>,
}

/// One gap: `first..=last`, and how many of its numbers the heartbeats explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    pub first: u64,
    pub last: u64,
    pub explained: u64,
}

impl Gap {
    pub fn missing(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// The verdict for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentReport {
    pub agent: String,
    pub events: u64,
    pub first: u64,
    pub last: u64,
    pub duplicates: Vec<(u64, u64)>,
    pub gaps: Vec<Gap>,
    pub heartbeats: usize,
    pub(crate) processes: usize,
}

impl AgentReport {
    pub(crate) fn unexplained(&self) -> u64 {
        self.gaps.iter().map(|g| g.missing() - g.explained).sum()
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub(crate) agents: Vec<AgentReport>,
    pub lines: u64,
    pub(crate) not_json: u64,
    pub(crate) unstamped: u64,
}

impl Report {
    pub(crate) fn unexplained(&self) -> u64 {
        self.agents.iter().map(AgentReport::unexplained).sum()
    }
}

/// A field by dotted path: nested objects, or a flat key with the dots (Splunk's extractions).
fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    let mut cur = doc;
    for p in path.split('.') {
        cur = cur.get(p)?;
    }
    Some(cur)
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        // Splunk gives multivalue fields as arrays (e.g. indexed and extracted alike).
        Value::Array(a) => a.first().and_then(as_u64),
        _ => None,
    }
}

fn as_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first().and_then(as_str),
        _ => None,
    }
}

/// The documents one export line holds.
fn documents(line: Value) -> Vec<Value> {
    if let Some(result) = line.get("result") {
        let raw = result
            .get("_raw")
            .and_then(Value::as_str)
            .and_then(|r| serde_json::from_str::<Value>(r).ok());
        return vec![match raw {
            Some(v @ Value::Object(_)) => v,
            _ => result.clone(),
        }];
    }
    if let Some(hits) = line.get("hits").and_then(|h| h.get("hits")).and_then(Value::as_array) {
        return hits.iter().filter_map(|h| h.get("_source").cloned()).collect();
    }
    if let Some(src) = line.get("_source") {
        return vec![src.clone()];
    }
    vec![line]
}

/// Reads an export and builds the report.
pub fn verify(text: &str) -> Report {
    let mut agents: BTreeMap<String, Agent> = BTreeMap::new();
    let mut report = Report::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        report.lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            report.not_json += 1;
            continue;
        };
        for doc in documents(v) {
            let agent = get(&doc, &format!("{AGENT_NS}.agent"))
                .or_else(|| doc.get("sendauth_siem_agent"))
                .and_then(as_str);
            let seq = get(&doc, &format!("{AGENT_NS}.seq"))
                .or_else(|| doc.get("sendauth_siem_seq"))
                .and_then(as_u64);
            let (Some(agent), Some(seq)) = (agent, seq) else {
                report.unstamped += 1;
                continue;
            };
            if seq == 0 {
                continue;
            }
            let a = agents.entry(agent).or_default();
            *a.seen.entry(seq).or_insert(0) += 1;
            if get(&doc, &format!("{AGENT_NS}.heartbeat")).is_some() {
                let dl = get(&doc, &format!("{AGENT_NS}.heartbeat.dead_lettered"))
                    .and_then(as_u64)
                    .unwrap_or(0);
                a.heartbeats.insert(seq, dl);
                if let Some(s) = get(&doc, &format!("{AGENT_NS}.heartbeat.started_at")).and_then(as_str) {
                    a.processes.insert(s);
                }
            }
        }
    }
    for (name, a) in agents {
        report.agents.push(judge(name, &a));
    }
    report
}

fn judge(name: String, a: &Agent) -> AgentReport {
    let first = *a.seen.keys().next().unwrap_or(&0);
    let last = *a.seen.keys().next_back().unwrap_or(&0);
    let mut gaps = Vec::new();
    let mut prev = first;
    for &s in a.seen.keys().skip(1) {
        if s > prev + 1 {
            gaps.push(Gap {
                first: prev + 1,
                last: s - 1,
                explained: 0,
            });
        }
        prev = s;
    }
    // Match missing numbers, lowest first, to the dead-letter counts of later heartbeats.
    for (&hb, &dl) in &a.heartbeats {
        let mut budget = dl;
        for g in gaps.iter_mut().filter(|g| g.first < hb) {
            if budget == 0 {
                break;
            }
            let open = (g.last.min(hb - 1) - g.first + 1).saturating_sub(g.explained);
            let take = open.min(budget);
            g.explained += take;
            budget -= take;
        }
    }
    AgentReport {
        agent: name,
        events: a.seen.len() as u64,
        first,
        last,
        duplicates: a.seen.iter().filter(|(_, &n)| n > 1).map(|(&s, &n)| (s, n)).collect(),
        gaps,
        heartbeats: a.heartbeats.len(),
        processes: a.processes.len(),
    }
}

fn range(first: u64, last: u64) -> String {
    if first == last {
        format!("{first}")
    } else {
        format!("{first}..{last}")
    }
}

/// The report as text, one agent after another, ending with a one-line verdict.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for a in &r.agents {
        let _ = writeln!(
            out,
            "agent {:?}: {} distinct sequence numbers from {} to {}; {} heartbeats from {} agent process(es)",
            a.agent, a.events, a.first, a.last, a.heartbeats, a.processes
        );
        if a.duplicates.is_empty() {
            let _ = writeln!(out, "  duplicates: none");
        } else {
            let extra: u64 = a.duplicates.iter().map(|(_, n)| n - 1).sum();
            let list: Vec<String> = a.duplicates.iter().take(20).map(|(s, n)| format!("{s} (x{n})")).collect();
            let more = if a.duplicates.len() > 20 { ", ..." } else { "" };
            let _ = writeln!(
                out,
                "  duplicates: {extra} extra copies of {} events (resends after a restart; harmless): {}{more}",
                a.duplicates.len(),
                list.join(", ")
            );
        }
        if a.gaps.is_empty() {
            let _ = writeln!(out, "  gaps: none");
        }
        for g in &a.gaps {
            let what = if g.explained == g.missing() {
                "explained by heartbeat dead-letter counts (the SIEM refused them; see `sendauth-siem dead-letter list` on the agent's host)".to_string()
            } else if g.explained > 0 {
                format!(
                    "{} explained by heartbeat dead-letter counts, {} NOT explained",
                    g.explained,
                    g.missing() - g.explained
                )
            } else {
                "NOT explained: missing from the SIEM with no dead letter reported for them".to_string()
            };
            let _ = writeln!(out, "  gap: seq {} ({} missing): {what}", range(g.first, g.last), g.missing());
        }
    }
    if r.not_json > 0 || r.unstamped > 0 {
        let _ = writeln!(
            out,
            "skipped: {} lines that are not JSON, {} documents without sendauth_siem.agent and .seq (forwarded with audit off?)",
            r.not_json, r.unstamped
        );
    }
    let unexplained = r.unexplained();
    if r.agents.is_empty() {
        let _ = writeln!(
            out,
            "result: no stamped events in {} lines; is audit: on, and is this an export of the events?",
            r.lines
        );
    } else if unexplained == 0 {
        let _ = writeln!(
            out,
            "result: complete: every sequence number between the first and last seen is present or accounted for"
        );
    } else {
        let _ = writeln!(out, "result: INCOMPLETE: {unexplained} events missing without explanation");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(agent: &str, seq: u64) -> String {
        format!(r#"{{"event_type":"transaction.verified","sendauth_siem":{{"agent":"{agent}","seq":{seq}}}}}"#)
    }

    fn hb(agent: &str, seq: u64, dl: u64, started: &str) -> String {
        format!(
            r#"{{"event_type":"sendauth_siem.heartbeat","sendauth_siem":{{"agent":"{agent}","seq":{seq},"heartbeat":{{"dead_lettered":{dl},"started_at":"{started}"}}}}}}"#
        )
    }

    #[test]
    fn gaps_duplicates_and_explanations() {
        let mut lines: Vec<String> = Vec::new();
        for s in (1..=20).filter(|s| ![5, 6, 15].contains(s)) {
            lines.push(if s == 10 { hb("a", 10, 2, "t1") } else { ev("a", s) });
        }
        lines.push(ev("a", 8));
        lines.push(r#"{"result":{"_raw":"not json","sendauth_siem.agent":"b","sendauth_siem.seq":"3"}}"#.into());
        lines.push(r#"{"_source":{"sendauth_siem":{"agent":"b","seq":5}}}"#.into());
        lines.push("garbage".into());
        let r = verify(&lines.join("\n"));
        let a = &r.agents[0];
        assert_eq!((a.first, a.last, a.events, a.heartbeats), (1, 20, 17, 1));
        assert_eq!(a.duplicates, vec![(8, 2)]);
        assert_eq!(
            a.gaps,
            vec![
                Gap {
                    first: 5,
                    last: 6,
                    explained: 2
                },
                Gap {
                    first: 15,
                    last: 15,
                    explained: 0
                }
            ]
        );
        assert_eq!(r.agents[0].unexplained(), 1);
        assert_eq!(r.unexplained(), 2);
        let b = &r.agents[1];
        assert_eq!(
            b.gaps,
            vec![Gap {
                first: 4,
                last: 4,
                explained: 0
            }]
        );
        assert_eq!(r.not_json, 1);
        let text = render(&r);
        assert!(text.contains("gap: seq 5..6 (2 missing): explained"), "{text}");
        assert!(text.contains("gap: seq 15 (1 missing): NOT explained"), "{text}");
        assert!(text.contains("INCOMPLETE: 2 events"), "{text}");
    }

    #[test]
    fn a_heartbeat_explains_only_earlier_gaps() {
        let text = [ev("a", 1), hb("a", 2, 1, "t"), ev("a", 4)].join("\n");
        let r = verify(&text);
        assert_eq!(
            r.agents[0].gaps,
            vec![Gap {
                first: 3,
                last: 3,
                explained: 0
            }]
        );
    }

    #[test]
    fn a_complete_export_says_so() {
        let text = [ev("a", 2), hb("a", 1, 0, "t"), ev("a", 3)].join("\n");
        let r = verify(&text);
        assert_eq!(r.unexplained(), 0);
        assert!(render(&r).contains("result: complete"));
    }
}
