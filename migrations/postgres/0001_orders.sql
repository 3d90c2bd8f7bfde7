-- Event store, order read model, product catalog and idempotency keys.

-- The event log. UNIQUE (aggregate_id, version) is the optimistic lock:
-- two writers that read the same version cannot both append the next one.
-- position gives every event a place in one global order for consumers.
CREATE TABLE events (
    position       BIGSERIAL PRIMARY KEY,
    event_id       UUID        NOT NULL UNIQUE,
    aggregate_id   UUID        NOT NULL,
    aggregate_type TEXT        NOT NULL,
    event_type     TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL DEFAULT 1,
    event_data     JSONB       NOT NULL,
    version        BIGINT      NOT NULL CHECK (version > 0),
    created_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT events_aggregate_version UNIQUE (aggregate_id, version)
);

-- Read model of orders, projected from events in the same transaction as
-- the append, rebuildable with `commerce replay`.
CREATE TABLE order_views (
    order_id      UUID PRIMARY KEY,
    customer_id   UUID        NOT NULL,
    status        TEXT        NOT NULL,
    currency      TEXT        NOT NULL,
    subtotal_amount NUMERIC   NOT NULL,
    adjustments   JSONB       NOT NULL DEFAULT '[]',
    total_amount  NUMERIC     NOT NULL,
    items         JSONB       NOT NULL,
    status_reason TEXT,
    version       BIGINT      NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
-- Order ids are UUIDv7 (time-ordered): newest first is order_id DESC.
CREATE INDEX order_views_by_customer ON order_views (customer_id, order_id DESC);
CREATE INDEX order_views_by_customer_status ON order_views (customer_id, status, order_id DESC);
CREATE INDEX order_views_by_status ON order_views (status, order_id DESC);

CREATE TABLE products (
    sku        TEXT PRIMARY KEY,
    name       TEXT        NOT NULL,
    unit_price NUMERIC     NOT NULL CHECK (unit_price >= 0),
    currency   TEXT        NOT NULL,
    on_hand    BIGINT      NOT NULL CHECK (on_hand >= 0),
    reserved   BIGINT      NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    version    BIGINT      NOT NULL DEFAULT 1,
    updated_at TIMESTAMPTZ NOT NULL
);

-- "This customer sent this key and got this order": a retried POST returns
-- the same order. Written in the same transaction as the order's events.
CREATE TABLE idempotency_keys (
    customer_id  UUID        NOT NULL,
    idem_key     TEXT        NOT NULL,
    request_hash TEXT        NOT NULL,
    order_id     UUID        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, idem_key)
);
