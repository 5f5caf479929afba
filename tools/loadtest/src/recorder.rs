//! What a run's answers were: latency overall and per outcome, and a count per outcome label (`"202"`,
//! `"409 SOLD_OUT"`, `"transport error (timeout)"`, ...).
//!
//! The client is the bound of the bench's fastest scenarios (one thread, saturated), so labelling an answer must
//! cost little: error answers that are byte-for-byte one seen before (a flood's 6,900 SOLD_OUTs are) reuse its
//! label after one comparison, instead of a JSON parse and a formatted string each; only new ones are parsed.

use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What came back for one request.
pub enum Answer {
    Http(StatusCode, Bytes),
    /// No HTTP answer: `timeout`, `connect` or `other`.
    Transport(&'static str),
}

/// Distinct error bodies remembered; past that (say, LIMIT_EXCEEDEDs that each name an order), answers are parsed.
const REMEMBERED: usize = 64;

struct Slot {
    label: String,
    count: u64,
    latency: Histogram<u64>,
    /// When the first answer of this outcome arrived.
    first: Instant,
}

pub struct Recorder {
    pub latency: Histogram<u64>,
    slots: Vec<Slot>,
    /// (status, body) → slot; success answers are keyed by status alone (their bodies name orders).
    seen: Vec<(StatusCode, Bytes, usize)>,
    pub last_success: Option<Instant>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            // 1 µs to 60 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            slots: Vec::new(),
            seen: Vec::new(),
            last_success: None,
        }
    }

    pub fn record(&mut self, took: Duration, answer: Answer) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros);
        let slot = match answer {
            Answer::Http(status, body) => {
                if status.is_success() {
                    self.last_success = Some(Instant::now());
                }
                self.slot_of(status, body)
            }
            Answer::Transport(kind) => self.slot_named(format!("transport error ({kind})")),
        };
        let slot = &mut self.slots[slot];
        slot.count += 1;
        slot.latency.saturating_record(micros);
    }

    fn slot_of(&mut self, status: StatusCode, body: Bytes) -> usize {
        let key = if status.is_success() {
            Bytes::new()
        } else {
            body
        };
        if let Some(&(_, _, slot)) = self.seen.iter().find(|(s, b, _)| *s == status && *b == key) {
            return slot;
        }
        let slot = self.slot_named(label(status, &key));
        if self.seen.len() < REMEMBERED {
            self.seen.push((status, key, slot));
        }
        slot
    }

    fn slot_named(&mut self, label: String) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.label == label) {
            return i;
        }
        self.slots.push(Slot {
            label,
            count: 0,
            latency: Histogram::new_from(&self.latency),
            first: Instant::now(),
        });
        self.slots.len() - 1
    }

    /// When each outcome was first seen.
    pub fn first_seen(&self) -> BTreeMap<String, Instant> {
        self.slots
            .iter()
            .map(|s| (s.label.clone(), s.first))
            .collect()
    }

    /// Count and latency per outcome label.
    pub fn outcomes(&self) -> (BTreeMap<String, u64>, BTreeMap<String, Histogram<u64>>) {
        let counts = self
            .slots
            .iter()
            .map(|s| (s.label.clone(), s.count))
            .collect();
        let latency = self
            .slots
            .iter()
            .map(|s| (s.label.clone(), s.latency.clone()))
            .collect();
        (counts, latency)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
}

/// `"202"` for a success, `"409 SOLD_OUT"` for an error body naming its code, else the bare status.
fn label(status: StatusCode, body: &[u8]) -> String {
    if status.is_success() {
        return status.as_str().to_owned();
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => format!("{} {}", status.as_str(), b.error.code),
        Err(_) => status.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOLD_OUT: &[u8] = br#"{"error":{"code":"SOLD_OUT","message":"the sale is sold out"}}"#;

    fn limit(order: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"error":{{"code":"LIMIT_EXCEEDED","message":"m","order_id":"{order}"}}}}"#
        ))
    }

    #[test]
    fn answers_are_counted_under_their_status_and_code() {
        let mut r = Recorder::new();
        let ms = Duration::from_millis(1);
        for _ in 0..3 {
            r.record(
                ms,
                Answer::Http(StatusCode::CONFLICT, Bytes::from_static(SOLD_OUT)),
            );
        }
        r.record(
            ms,
            Answer::Http(
                StatusCode::ACCEPTED,
                Bytes::from_static(b"{\"order_id\":\"a\"}"),
            ),
        );
        r.record(
            ms,
            Answer::Http(
                StatusCode::ACCEPTED,
                Bytes::from_static(b"{\"order_id\":\"b\"}"),
            ),
        );
        r.record(
            ms,
            Answer::Http(StatusCode::BAD_GATEWAY, Bytes::from_static(b"<html>")),
        );
        r.record(ms, Answer::Transport("timeout"));
        // More distinct bodies than are remembered: still each under its code.
        for i in 0..(REMEMBERED + 10) {
            r.record(
                ms,
                Answer::Http(StatusCode::CONFLICT, limit(&i.to_string())),
            );
        }
        let (counts, latency) = r.outcomes();
        let expected: BTreeMap<String, u64> = [
            ("409 SOLD_OUT", 3),
            ("202", 2),
            ("502", 1),
            ("transport error (timeout)", 1),
            ("409 LIMIT_EXCEEDED", REMEMBERED as u64 + 10),
        ]
        .into_iter()
        .map(|(l, n)| (l.to_owned(), n))
        .collect();
        assert_eq!(counts, expected);
        assert_eq!(latency["409 SOLD_OUT"].len(), 3);
        let first = r.first_seen();
        assert!(first["409 SOLD_OUT"] <= first["202"], "SOLD_OUT came first");
        assert_eq!(r.latency.len(), 7 + REMEMBERED as u64 + 10);
        assert!(r.last_success.is_some());
    }
}
