-- Sales and the orders written from reservations. PostgreSQL is the record of what was sold.

CREATE TABLE sales (
    id                  BIGSERIAL PRIMARY KEY,
    product_name        TEXT        NOT NULL CHECK (char_length(product_name) BETWEEN 1 AND 200),
    price_minor         BIGINT      NOT NULL CHECK (price_minor > 0 AND price_minor <= 100000000000),
    total_stock         BIGINT      NOT NULL CHECK (total_stock BETWEEN 1 AND 10000000),
    per_user_limit      INTEGER     NOT NULL CHECK (per_user_limit BETWEEN 1 AND 100),
    starts_at           TIMESTAMPTZ NOT NULL,
    ends_at             TIMESTAMPTZ NOT NULL,
    payment_window_secs INTEGER     NOT NULL CHECK (payment_window_secs BETWEEN 1 AND 86400),
    -- Units held by active (pending_payment or paid) orders, kept by order-writer in the same transaction as
    -- each batch: the database's own guard against oversell if Redis ever loses writes.
    held                BIGINT      NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (held BETWEEN 0 AND total_stock)
);

CREATE TABLE orders (
    -- The reservation id (UUIDv7) chosen by the gateway: inserting is idempotent.
    id                UUID        PRIMARY KEY,
    sale_id           BIGINT      NOT NULL REFERENCES sales (id),
    user_id           TEXT        NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 64),
    quantity          INTEGER     NOT NULL CHECK (quantity > 0),
    amount_minor      BIGINT      NOT NULL CHECK (amount_minor > 0),
    status            TEXT        NOT NULL
        CHECK (status IN ('pending_payment', 'paid', 'expired', 'rejected')),
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    paid_at           TIMESTAMPTZ,
    shipping_priority BIGINT,
    written_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The database itself refuses a second active order of one buyer in one sale.
CREATE UNIQUE INDEX orders_one_active_per_buyer
    ON orders (sale_id, user_id) WHERE status IN ('pending_payment', 'paid');
-- The expiry sweeper scans only what can still expire.
CREATE INDEX orders_pending_by_deadline ON orders (expires_at) WHERE status = 'pending_payment';
-- "My orders", newest first.
CREATE INDEX orders_by_buyer ON orders (user_id, created_at DESC);
-- Shipping priorities are 1..N per sale.
CREATE UNIQUE INDEX orders_shipping_priority ON orders (sale_id, shipping_priority)
    WHERE shipping_priority IS NOT NULL;
