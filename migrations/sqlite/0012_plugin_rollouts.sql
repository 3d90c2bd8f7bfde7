-- The twin of migrations/postgres/0012_plugin_rollouts.sql.
ALTER TABLE plugin_heads ADD COLUMN canary_version INTEGER;
ALTER TABLE plugin_heads ADD COLUMN canary_percent INTEGER;
ALTER TABLE plugin_heads ADD COLUMN shadow_version INTEGER;
ALTER TABLE plugin_heads ADD COLUMN shadow_ppm INTEGER;

CREATE TABLE plugin_runs (
    id          BLOB    PRIMARY KEY,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    input       TEXT    NOT NULL,
    output      TEXT,
    fuel        INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    log         TEXT    NOT NULL,
    shadow      BOOLEAN NOT NULL DEFAULT 0,
    at          TEXT    NOT NULL
);
CREATE INDEX plugin_runs_by_plugin ON plugin_runs (name, at DESC);
