-- The plugin registry: every uploaded version, which one is active per
-- name, and a generation number bumped on every activation change that
-- replicas poll to reload within a second.
CREATE TABLE plugin_versions (
    name       TEXT        NOT NULL,
    version    BIGINT      NOT NULL,
    kind       TEXT        NOT NULL,
    sha256     TEXT        NOT NULL,
    bytes      BYTEA       NOT NULL,
    config     TEXT        NOT NULL,
    priority   INTEGER     NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE plugin_heads (
    name             TEXT PRIMARY KEY,
    kind             TEXT        NOT NULL,
    active_version   BIGINT,
    previous_version BIGINT,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE plugin_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO plugin_generation (id, generation) VALUES (1, 0);
