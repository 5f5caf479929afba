//! The sale catalog: sale records cached in the process, so an unknown or lost sale costs no PostgreSQL query
//! per request (a flood of `GET /sales/<random>` or of reservations for a lost sale must not starve the pool
//! that the warmer needs).
//!
//! Sales never change after creation and ids are never reused, so a loaded record (or the absence of a sale
//! under an id at or below the highest issued id) is kept for good. An id above the highest known one is
//! answered "unknown" from memory; the highest id is re-read at most once per [`MAX_ID_REFRESH`]. Loads are
//! single-flight: however many requests miss at once, at most one query runs.

use chrono::Utc;
use flashsale_domain::{Sale, SaleId};
use flashsale_store::{PgPool, StoreError, sales};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const MAX_ID_REFRESH: Duration = Duration::from_secs(1);

/// A sale and the units its active orders held when it was loaded.
#[derive(Debug, Clone)]
pub struct Entry {
    pub sale: Sale,
    pub held: i64,
    /// Loaded after the sale's last reservation could end: `held` no longer changes.
    pub settled: bool,
}

pub struct SaleCatalog {
    pool: PgPool,
    known: RwLock<HashMap<SaleId, Option<Arc<Entry>>>>,
    max_id: AtomicI64,
    /// Single flight for every query, and when the highest id was last read.
    loading: Mutex<Option<Instant>>,
    /// Sales not yet ended, soonest first, as of the last change of `known` (`None`: rebuild on next use).
    listed: RwLock<Option<Arc<Vec<Arc<Entry>>>>>,
}

impl SaleCatalog {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            known: RwLock::new(HashMap::new()),
            max_id: AtomicI64::new(0),
            loading: Mutex::new(None),
            listed: RwLock::new(None),
        }
    }

    /// Records a sale just created or just read from PostgreSQL.
    pub fn remember(&self, sale: Sale, held: i64) {
        let id = sale.id;
        self.max_id.fetch_max(id.get(), Ordering::AcqRel);
        let settled = !sale.is_live(Utc::now());
        if let Ok(mut known) = self.known.write() {
            known.insert(
                id,
                Some(Arc::new(Entry {
                    sale,
                    held,
                    settled,
                })),
            );
        }
        self.relist();
    }

    fn relist(&self) {
        if let Ok(mut listed) = self.listed.write() {
            *listed = None;
        }
    }

    /// The sales whose window has not ended, by `starts_at` then id (upcoming and active, soonest first), from
    /// memory: every live sale is remembered by each warmer pass and by its creation on this gateway.
    pub fn upcoming_and_active(&self) -> Arc<Vec<Arc<Entry>>> {
        let now = Utc::now();
        if let Ok(listed) = self.listed.read()
            && let Some(list) = listed.as_ref()
        {
            return Arc::new(
                list.iter()
                    .filter(|e| e.sale.ends_at > now)
                    .cloned()
                    .collect(),
            );
        }
        let mut list: Vec<Arc<Entry>> = self
            .known
            .read()
            .map(|known| {
                known
                    .values()
                    .flatten()
                    .filter(|e| e.sale.ends_at > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        list.sort_by_key(|e| (e.sale.starts_at, e.sale.id));
        let list = Arc::new(list);
        if let Ok(mut listed) = self.listed.write() {
            *listed = Some(Arc::clone(&list));
        }
        list
    }

    fn cached(&self, id: SaleId) -> Option<Option<Arc<Entry>>> {
        self.known.read().ok()?.get(&id).cloned()
    }

    /// The sale, from memory when possible; `None` when no sale has this id.
    pub async fn get(&self, id: SaleId) -> Result<Option<Arc<Entry>>, StoreError> {
        if let Some(entry) = self.cached(id) {
            return Ok(entry);
        }
        let mut loading = self.loading.lock().await;
        if let Some(entry) = self.cached(id) {
            return Ok(entry);
        }
        if id.get() > self.max_id.load(Ordering::Acquire) {
            if loading.is_some_and(|at| at.elapsed() < MAX_ID_REFRESH) {
                return Ok(None);
            }
            let mut conn = self.pool.get().await?;
            let max = sales::max_id(&mut conn).await?;
            self.max_id.fetch_max(max, Ordering::AcqRel);
            *loading = Some(Instant::now());
            if id.get() > max {
                return Ok(None);
            }
        }
        self.load(id).await
    }

    /// The sale with `held` final (re-read once after the sale settled), for answers PostgreSQL gives alone.
    pub async fn settled(&self, id: SaleId) -> Result<Option<Arc<Entry>>, StoreError> {
        match self.get(id).await? {
            Some(e) if !e.settled && !e.sale.is_live(Utc::now()) => {
                let _single = self.loading.lock().await;
                match self.cached(id) {
                    Some(Some(e)) if e.settled => Ok(Some(e)),
                    _ => self.load(id).await,
                }
            }
            other => Ok(other),
        }
    }

    async fn load(&self, id: SaleId) -> Result<Option<Arc<Entry>>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row = sales::find(&mut conn, id).await?;
        let entry = match row {
            Some(row) => {
                let sale = row.to_sale().map_err(StoreError::Unavailable)?;
                let settled = !sale.is_live(Utc::now());
                Some(Arc::new(Entry {
                    sale,
                    held: row.held,
                    settled,
                }))
            }
            None => None,
        };
        if let Ok(mut known) = self.known.write() {
            known.insert(id, entry.clone());
        }
        self.relist();
        Ok(entry)
    }
}
