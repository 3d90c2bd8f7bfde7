-- The transactional outbox: the events table is the outbox (events are
-- written in the transaction that changes the order), and a relay
-- publishes it to the Redis Stream `commerce.events`.
--
-- Positions come from a sequence, which hands them out at insert time, not
-- at commit: a transaction that took position 7 can commit after one that
-- took 8, so a reader that keeps "position > last seen" can read 8, move
-- past 7 and never see it. tx_id records the id of the transaction that
-- wrote each event. Every transaction below the xmin of a reader's
-- snapshot has ended, and no new one can get an id below it, so the
-- events with tx_id < xmin form a set that will never grow: the feed reads
-- only those, in (tx_id, position) order, and skips nothing.
--
-- Existing rows were all committed long ago: 0 (below any xmin) is right
-- for them. The default is set after the column is added so that they get
-- the constant, and new rows the id of the transaction inserting them.
ALTER TABLE events ADD COLUMN tx_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ALTER COLUMN tx_id SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX events_feed ON events (tx_id, position);

-- Where each relay is in the feed, and which replica may publish: the
-- owner holds the lease until lease_until and renews it while it runs; a
-- replica takes over only a lease that has run out.
CREATE TABLE outbox_relay (
    name            TEXT PRIMARY KEY,
    cursor_tx       BIGINT      NOT NULL DEFAULT 0,
    cursor_position BIGINT      NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until     TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
