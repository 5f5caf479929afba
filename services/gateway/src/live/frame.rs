//! One event of the live stock feed, serialised once per gateway and shared by every client of the sale.
//!
//! The event id is `<version>-<phase>`: `version` is the sale's counters version in Redis (raised by every
//! script that changes `remaining` or `sold`, the same on every gateway), `phase` is 0 before the sale window,
//! 1 inside it, 2 after it (the status also changes with the clock). Both only grow, so an event is newer than
//! another when either part is greater. Clients treat the id as opaque.

use crate::routes::sales::SaleView;
use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use flashsale_domain::{Sale, SaleStatus};
use flashsale_stock::{Counters, SaleSnapshot};
use serde::Serialize;

/// Where an event stands: compared with a client's `Last-Event-ID` and with the last event sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub version: i64,
    pub phase: u8,
}

impl Mark {
    /// A `Last-Event-ID` this gateway (or another) sent; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        let (version, phase) = raw.trim().split_once('-')?;
        let phase: u8 = phase.parse().ok()?;
        (phase <= 2).then_some(Self {
            version: version.parse().ok()?,
            phase,
        })
    }

    /// True when this state is one the client has not seen (`None`: it has seen nothing).
    pub fn newer_than(self, seen: Option<Mark>) -> bool {
        seen.is_none_or(|s| self.version > s.version || self.phase > s.phase)
    }
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.version, self.phase)
    }
}

/// 0 before the window, 1 inside it, 2 after it.
pub fn phase(sale: &Sale, now: DateTime<Utc>) -> u8 {
    if now < sale.starts_at {
        0
    } else if now < sale.ends_at {
        1
    } else {
        2
    }
}

/// When the status next changes with the clock alone.
pub fn next_phase_at(sale: &Sale, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match phase(sale, now) {
        0 => Some(sale.starts_at),
        1 => Some(sale.ends_at),
        _ => None,
    }
}

#[derive(Serialize)]
struct Data {
    sale_id: i64,
    remaining: i64,
    reserved: i64,
    sold: i64,
    status: SaleStatus,
}

#[derive(Debug)]
pub struct Frame {
    pub mark: Mark,
    pub counters: Counters,
    /// The whole event, `id:` and `data:` lines and the blank line that ends it.
    pub bytes: Bytes,
}

impl Frame {
    pub fn new(sale: &Sale, counters: Counters, now: DateTime<Utc>) -> Self {
        let mark = Mark {
            version: counters.version,
            phase: phase(sale, now),
        };
        // The same arithmetic as GET /api/v1/sales/{id}.
        let view = SaleView::of(
            &SaleSnapshot {
                sale: sale.clone(),
                remaining: counters.remaining,
                sold: counters.sold,
            },
            now,
        );
        let data = Data {
            sale_id: sale.id.get(),
            remaining: view.remaining,
            reserved: view.reserved,
            sold: view.sold,
            status: view.status,
        };
        let json = serde_json::to_string(&data).unwrap_or_else(|_| String::from("{}"));
        Self {
            mark,
            counters,
            bytes: Bytes::from(format!("id: {mark}\ndata: {json}\n\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_anything_else_is_unknown() {
        let mark = Mark {
            version: 1_733_000_000_000_123,
            phase: 1,
        };
        assert_eq!(Mark::parse(&mark.to_string()), Some(mark));
        for bad in ["", "12", "a-1", "12-3", "12-", "-1", "12-1-1"] {
            assert_eq!(Mark::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn newer_when_either_part_grew() {
        let seen = Mark {
            version: 10,
            phase: 1,
        };
        assert!(
            Mark {
                version: 11,
                phase: 1
            }
            .newer_than(Some(seen))
        );
        assert!(
            Mark {
                version: 10,
                phase: 2
            }
            .newer_than(Some(seen))
        );
        assert!(!seen.newer_than(Some(seen)));
        assert!(
            !Mark {
                version: 9,
                phase: 1
            }
            .newer_than(Some(seen))
        );
        assert!(seen.newer_than(None));
    }
}
