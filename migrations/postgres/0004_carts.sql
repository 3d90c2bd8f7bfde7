-- Carts kept in the database when Redis is not configured; the twin of
-- migrations/sqlite/0004_carts.sql. One row per customer with a cart, one
-- row per line. `revision` changes on every write, so that a checkout can
-- empty exactly the cart state it turned into an order. A cart whose
-- `expires_at` has passed counts as empty and is purged on the next write.
-- Both tables carry the customer id, the distribution key under Citus.
CREATE TABLE carts (
    customer_id UUID PRIMARY KEY,
    revision    UUID        NOT NULL,
    currency    TEXT        NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX carts_by_expiry ON carts (expires_at);

CREATE TABLE cart_lines (
    customer_id UUID    NOT NULL REFERENCES carts (customer_id) ON DELETE CASCADE,
    sku         TEXT    NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (customer_id, sku)
);
