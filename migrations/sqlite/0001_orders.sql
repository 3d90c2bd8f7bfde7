-- Event store, order read model, product catalog and idempotency keys.
-- The twin of migrations/postgres/0001_orders.sql: UUIDs are 16-byte BLOBs
-- (they sort as PostgreSQL's uuid does), amounts are decimal TEXT,
-- timestamps RFC 3339 TEXT, JSON is TEXT.

-- UNIQUE (aggregate_id, version) is the optimistic lock; AUTOINCREMENT
-- keeps positions from ever being reused.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       BLOB    NOT NULL UNIQUE,
    aggregate_id   BLOB    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    event_data     TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version > 0),
    created_at     TEXT    NOT NULL,
    CONSTRAINT events_aggregate_version UNIQUE (aggregate_id, version)
);

CREATE TABLE order_views (
    order_id      BLOB PRIMARY KEY,
    customer_id   BLOB    NOT NULL,
    status        TEXT    NOT NULL,
    currency      TEXT    NOT NULL,
    subtotal_amount TEXT  NOT NULL,
    adjustments   TEXT    NOT NULL DEFAULT '[]',
    total_amount  TEXT    NOT NULL,
    items         TEXT    NOT NULL,
    status_reason TEXT,
    version       INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX order_views_by_customer ON order_views (customer_id, order_id DESC);
CREATE INDEX order_views_by_customer_status ON order_views (customer_id, status, order_id DESC);
CREATE INDEX order_views_by_status ON order_views (status, order_id DESC);

CREATE TABLE products (
    sku        TEXT PRIMARY KEY,
    name       TEXT    NOT NULL,
    unit_price TEXT    NOT NULL,
    currency   TEXT    NOT NULL,
    on_hand    INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    version    INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT    NOT NULL
);

CREATE TABLE idempotency_keys (
    customer_id  BLOB NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    order_id     BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (customer_id, idem_key)
);
