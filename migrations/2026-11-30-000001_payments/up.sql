-- Payments, the webhook events already answered, and each sale's count of paid orders (shipping priorities).

-- The last shipping priority handed out in the sale: the next paid order takes paid_count + 1 under the sale
-- row's lock, so priorities are 1..N in commit order with no gap and no repeat.
ALTER TABLE sales ADD COLUMN paid_count BIGINT NOT NULL DEFAULT 0 CHECK (paid_count >= 0);

-- One row per checkout attempt. No foreign key to orders: the payment of a reservation may be recorded before
-- order-writer has written its order row.
CREATE TABLE payments (
    id            UUID        PRIMARY KEY,
    order_id      UUID        NOT NULL,
    sale_id       BIGINT      NOT NULL,
    user_id       TEXT        NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 64),
    quantity      INTEGER     NOT NULL CHECK (quantity > 0),
    -- Taken from the reservation (never from a client).
    amount_minor  BIGINT      NOT NULL CHECK (amount_minor > 0),
    status        TEXT        NOT NULL
        CHECK (status IN ('pending', 'succeeded', 'failed', 'refund_required')),
    -- The reservation's creation and deadline: enough to admit the order row if order-writer is behind.
    reserved_at   TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- At most one pending payment per order: a repeated checkout answers the same one.
CREATE UNIQUE INDEX payments_one_pending_per_order ON payments (order_id) WHERE status = 'pending';
CREATE INDEX payments_by_order ON payments (order_id);

-- Every webhook event processed, with the answer given, so a replay answers the same and changes nothing.
CREATE TABLE webhook_events (
    event_id     TEXT        PRIMARY KEY CHECK (char_length(event_id) BETWEEN 1 AND 200),
    payment_id   UUID        NOT NULL,
    event_type   TEXT        NOT NULL,
    status_code  INTEGER     NOT NULL,
    answer       TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
