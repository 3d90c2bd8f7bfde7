-- Carts kept in the embedded store when Redis is not configured; the twin
-- of migrations/postgres/0004_carts.sql. One row per customer with a cart,
-- one row per line. `revision` changes on every write, so that a checkout
-- can empty exactly the cart state it turned into an order. A cart whose
-- `expires_at` has passed counts as empty and is purged on the next write.
CREATE TABLE carts (
    customer_id BLOB PRIMARY KEY,
    revision    BLOB NOT NULL,
    currency    TEXT NOT NULL,
    -- Unix milliseconds: compares as a number, whatever the text format.
    expires_at  INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX carts_by_expiry ON carts (expires_at);

CREATE TABLE cart_lines (
    customer_id BLOB    NOT NULL REFERENCES carts (customer_id) ON DELETE CASCADE,
    sku         TEXT    NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (customer_id, sku)
);
