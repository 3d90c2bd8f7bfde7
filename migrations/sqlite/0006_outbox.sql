-- The transactional outbox; the twin of migrations/postgres/0006_outbox.sql.
--
-- SQLite has one writer, which holds the write lock until it commits, so
-- positions commit in order and the feed's cursor is the position alone.
-- tx_id is 0 on every row: it is here so that both backends order the
-- feed by the same (tx_id, position) and hand out the same cursors.
ALTER TABLE events ADD COLUMN tx_id INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_feed ON events (tx_id, position);

-- lease_until is milliseconds since the epoch (an integer compares
-- correctly; RFC 3339 text of varying precision does not).
CREATE TABLE outbox_relay (
    name            TEXT PRIMARY KEY,
    cursor_tx       INTEGER NOT NULL DEFAULT 0,
    cursor_position INTEGER NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    updated_at      TEXT    NOT NULL
);
