//! What a test reads back to check its assertions: Redis stock and outbox, order rows, the database's
//! `held` counter. Panics with the cause on any I/O failure, since a test cannot go on without the answer.

use crate::env::TestEnv;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use flashsale_domain::SaleId;

/// The longest a test's own broker call (a passive declare, a close) may take.
const BROKER_CALL: std::time::Duration = std::time::Duration::from_secs(5);

impl TestEnv {
    /// Messages waiting in the dead-letter queue (a passive declare: reads the count, changes nothing).
    pub async fn dead_letters(&self) -> u32 {
        let conn = flashsale_broker::connect(&self.settings.amqp, "test-dead-letters")
            .await
            .unwrap_or_else(|e| panic!("amqp: {e:#}"));
        let queue = flashsale_broker::Names::new(&self.settings.amqp.prefix).dead_queue();
        let read = async {
            let ch = conn
                .create_channel()
                .await
                .unwrap_or_else(|e| panic!("channel: {e}"));
            flashsale_broker::depth::queue_depth(&ch, &queue)
                .await
                .unwrap_or_else(|e| panic!("dead queue {queue}: {e}"))
        };
        let depth = tokio::time::timeout(BROKER_CALL, read)
            .await
            .unwrap_or_else(|_| panic!("reading the depth of {queue} took over {BROKER_CALL:?}"));
        // A close the broker never answers must not hold the test; dropping the connection closes it anyway.
        let _ = tokio::time::timeout(BROKER_CALL, conn.close(200, "done".into())).await;
        depth
    }

    /// Every Redis key under the sale's hash tag.
    pub async fn keys_of_sale(&self, sale: SaleId) -> Vec<String> {
        let pattern = format!("{}{{sale:{}}}:*", self.stock.keys().prefix(), sale.get());
        let mut conn = self
            .redis()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"));
        crate::prepare::scan(&mut conn, &pattern)
            .await
            .unwrap_or_else(|e| panic!("scan: {e:#}"))
    }

    /// Units Redis says are left (`None` when the sale has no state there).
    pub async fn remaining(&self, sale: SaleId) -> Option<i64> {
        self.stock
            .remaining_of(&[sale])
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"))
            .pop()
            .flatten()
    }

    /// Entries waiting in the sale's outbox (in all its stock shards).
    pub async fn outbox_len(&self, sale: SaleId) -> usize {
        let mut conn = self
            .redis()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"));
        let shards = self
            .stock
            .shards_of(sale)
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"));
        let mut n = 0;
        for at in shards {
            n += redis::AsyncCommands::zcard::<_, usize>(&mut conn, self.stock.keys().outbox(at))
                .await
                .unwrap_or_else(|e| panic!("redis: {e}"));
        }
        n
    }

    pub async fn order_count(&self, sale: SaleId) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.pg().await;
        diesel::sql_query("SELECT count(*) AS n FROM orders WHERE sale_id = $1")
            .bind::<BigInt, _>(sale.get())
            .get_result::<N>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("counting orders: {e}"))
            .n
    }

    /// `(order id, user id, status)` of every order row of a sale.
    pub async fn orders(&self, sale: SaleId) -> Vec<(String, String, String)> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            id: String,
            #[diesel(sql_type = Text)]
            user_id: String,
            #[diesel(sql_type = Text)]
            status: String,
        }
        let mut conn = self.pg().await;
        diesel::sql_query(
            "SELECT id::text AS id, user_id, status FROM orders WHERE sale_id = $1 ORDER BY id",
        )
        .bind::<BigInt, _>(sale.get())
        .load::<Row>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("listing orders: {e}"))
        .into_iter()
        .map(|r| (r.id, r.user_id, r.status))
        .collect()
    }

    /// The ids of every order row of a sale.
    pub async fn order_ids(&self, sale: SaleId) -> std::collections::HashSet<String> {
        self.orders(sale)
            .await
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    }

    /// The database's count of units held by active orders.
    pub async fn held(&self, sale: SaleId) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            held: i64,
        }
        let mut conn = self.pg().await;
        diesel::sql_query("SELECT held FROM sales WHERE id = $1")
            .bind::<BigInt, _>(sale.get())
            .get_result::<N>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("reading held: {e}"))
            .held
    }

    pub async fn sale_rows(&self) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.pg().await;
        diesel::sql_query("SELECT count(*) AS n FROM sales")
            .get_result::<N>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("counting sales: {e}"))
            .n
    }
}
