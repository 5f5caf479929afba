//! Sold-out and ended answers from memory. Once the script has said SOLD_OUT (and Redis confirms the sale has
//! exactly 0 units left) or SALE_ENDED, the gateway keeps the sale's holders (buyers with an active order) in
//! process memory and answers every other buyer without a Redis command. A holder, and any request with an
//! `Idempotency-Key`, still goes to the script: they must keep their LIMIT_EXCEEDED with `order_id` and their
//! replayed 202.
//!
//! Units that come back are on sale again at once: the scripts that return units publish the sale's id on
//! the restock channel and `announcements::follow` forgets the sale; as the safety net for an announcement that was
//! missed (Pub/Sub delivers at most once, and nothing while disconnected), `verify` re-reads the remaining
//! units of every remembered sale every `gateway.sold_out_check_ms` and forgets those that are not at 0.
//!
//! Nobody can become a holder while a sale stays sold out (that takes a unit), so the holder list read when it
//! sold out stays exact until the next restock, which forgets the sale anyway.

use arc_swap::ArcSwap;
use flashsale_domain::{SaleId, UserId};
use flashsale_stock::Stock;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    SoldOut,
    Ended,
}

struct Entry {
    gone: Gone,
    /// The end of the sale window (Unix ms): a sold-out sale that ends answers SALE_ENDED, as the script would.
    ends_ms: i64,
    holders: HashSet<String>,
}

#[derive(Default)]
pub struct SoldOutMemory {
    /// Read on every reservation: a snapshot that readers load without a lock; rarely replaced.
    sales: ArcSwap<HashMap<SaleId, Arc<Entry>>>,
    /// Bumped on every restock announcement and whenever announcements may have been missed: a holder list
    /// read before a bump may be stale and is dropped.
    restocks: AtomicU64,
    /// Sales whose holders are being read, so a flood of SOLD_OUT answers reads them once.
    loading: Mutex<HashSet<SaleId>>,
    /// Serialises the writers (rare), so a restock can never slip between a loader's last look at `restocks`
    /// and its insert. Readers never take it.
    writes: Mutex<()>,
}

impl SoldOutMemory {
    /// The answer from memory for a buyer without an Idempotency-Key, if the sale is remembered and the buyer
    /// holds nothing in it.
    pub fn answer(&self, sale: SaleId, user: &UserId) -> Option<Gone> {
        let sales = self.sales.load();
        let entry = sales.get(&sale)?;
        if entry.holders.contains(user.as_str()) {
            return None;
        }
        if entry.gone == Gone::SoldOut && chrono::Utc::now().timestamp_millis() >= entry.ends_ms {
            return Some(Gone::Ended);
        }
        Some(entry.gone)
    }

    /// The script answered SOLD_OUT or SALE_ENDED: read the sale's holders in the background (once, however
    /// many buyers hear it at the same moment) and remember it, unless units came back meanwhile.
    pub fn learn(self: &Arc<Self>, stock: &Stock, sale: SaleId, gone: Gone) {
        if self.sales.load().contains_key(&sale) {
            return;
        }
        if let Ok(mut loading) = self.loading.lock()
            && !loading.insert(sale)
        {
            return;
        }
        let seen = self.restocks.load(Ordering::Acquire);
        let (memory, stock) = (Arc::clone(self), stock.clone());
        tokio::spawn(async move {
            let read = stock.gone_view(sale).await;
            if let Ok(mut loading) = memory.loading.lock() {
                loading.remove(&sale);
            }
            let view = match read {
                Ok(read) => read,
                Err(error) => {
                    tracing::debug!(%error, %sale, "cannot read a sold-out sale's holders; answering from Redis");
                    return;
                }
            };
            let still = match gone {
                Gone::SoldOut => view.remaining == Some(0),
                Gone::Ended => view.remaining.is_some(),
            };
            let Some(ends_ms) = view.ends_ms.filter(|_| still) else {
                return;
            };
            let entry = Arc::new(Entry {
                gone,
                ends_ms,
                holders: view.holders.into_iter().collect(),
            });
            let _writing = memory.writes.lock();
            if memory.restocks.load(Ordering::Acquire) != seen {
                return;
            }
            memory.sales.rcu(|sales| {
                let mut sales = HashMap::clone(sales);
                sales.insert(sale, Arc::clone(&entry));
                sales
            });
        });
    }

    /// Units came back to `sale`: sell them again. True if the sale was remembered.
    pub fn restocked(&self, sale: SaleId) -> bool {
        let _writing = self.writes.lock();
        self.restocks.fetch_add(1, Ordering::AcqRel);
        self.forget(|s, entry| *s == sale && entry.gone == Gone::SoldOut) > 0
    }

    /// Announcements may have been missed (the subscription was down): forget every sold-out sale. Returns
    /// how many were forgotten.
    pub fn forget_sold_out(&self) -> usize {
        let _writing = self.writes.lock();
        self.restocks.fetch_add(1, Ordering::AcqRel);
        self.forget(|_, entry| entry.gone == Gone::SoldOut)
    }

    /// The safety net: re-reads the remaining units of every remembered sale and forgets a sold-out sale that
    /// is no longer at 0 and an ended sale whose state is gone. If Redis cannot say, forgets them all: the
    /// script answers (or fails) for them until they are learnt again. Returns how many were forgotten.
    pub async fn verify(&self, stock: &Stock) -> usize {
        let remembered: Vec<(SaleId, Gone)> = self
            .sales
            .load()
            .iter()
            .map(|(s, e)| (*s, e.gone))
            .collect();
        if remembered.is_empty() {
            return 0;
        }
        let sales: Vec<SaleId> = remembered.iter().map(|r| r.0).collect();
        let stale: HashSet<SaleId> = match stock.remaining_of(&sales).await {
            Ok(remaining) => remembered
                .iter()
                .zip(remaining)
                .filter(|((_, gone), left)| match gone {
                    Gone::SoldOut => *left != Some(0),
                    Gone::Ended => left.is_none(),
                })
                .map(|((sale, _), _)| *sale)
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "cannot verify the sold-out sales; forgetting them");
                sales.into_iter().collect()
            }
        };
        if stale.is_empty() {
            return 0;
        }
        let _writing = self.writes.lock();
        self.restocks.fetch_add(1, Ordering::AcqRel);
        self.forget(|sale, _| stale.contains(sale))
    }

    /// Drops the matching sales; returns how many.
    fn forget(&self, matches: impl Fn(&SaleId, &Entry) -> bool) -> usize {
        let found = self
            .sales
            .load()
            .iter()
            .filter(|(s, e)| matches(s, e))
            .count();
        if found > 0 {
            self.sales.rcu(|sales| {
                let mut sales = HashMap::clone(sales);
                sales.retain(|s, e| !matches(s, e));
                sales
            });
        }
        found
    }

    /// How many sales are remembered (for tests and the metric).
    pub fn len(&self) -> usize {
        self.sales.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
