SET client_min_messages = warning;
-- The order write shape, alone: what one placed order costs PostgreSQL at
-- the least (an event appended, a stock row updated under its version, a
-- read-model row inserted), in tables of the same kinds as the service's.
DROP TABLE IF EXISTS ceiling_events, ceiling_stock, ceiling_views;
CREATE TABLE ceiling_events (
    position     BIGSERIAL PRIMARY KEY,
    aggregate_id UUID        NOT NULL,
    version      INTEGER     NOT NULL,
    event_type   TEXT        NOT NULL,
    data         JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (aggregate_id, version)
);
CREATE TABLE ceiling_stock (
    sku      TEXT PRIMARY KEY,
    on_hand  BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    version  BIGINT NOT NULL
);
CREATE TABLE ceiling_views (
    id          UUID PRIMARY KEY,
    customer_id UUID        NOT NULL,
    status      TEXT        NOT NULL,
    total       NUMERIC     NOT NULL,
    data        JSONB       NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX ceiling_views_by_customer ON ceiling_views (customer_id, id);
INSERT INTO ceiling_stock SELECT 'SKU-' || g, 1000000000, 0, 0 FROM generate_series(1, 1000) g;
