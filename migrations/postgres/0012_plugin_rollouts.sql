-- Safe plugin change (issue 17).
--
-- Canary: a version served to a stable share of customers beside the
-- active one (canary_percent, 1-99, of customers by a hash of their id).
-- Shadow: a version run beside the active one on a sample of its live
-- calls (shadow_ppm: parts per million of calls), off the request's path;
-- its answers are compared, never used. Both are per plugin, on its head,
-- and changing either bumps plugin_generation like an activation.
ALTER TABLE plugin_heads ADD COLUMN canary_version BIGINT;
ALTER TABLE plugin_heads ADD COLUMN canary_percent INTEGER;
ALTER TABLE plugin_heads ADD COLUMN shadow_version BIGINT;
ALTER TABLE plugin_heads ADD COLUMN shadow_ppm BIGINT;

-- The run log: failed calls always, a sample of successful ones, with what
-- the plugin was given and answered, its fuel, time and log. Bounded per
-- plugin (the newest COMMERCE_PLUGIN_RUNS_KEPT are kept).
CREATE TABLE plugin_runs (
    id          UUID        PRIMARY KEY,
    name        TEXT        NOT NULL,
    version     BIGINT      NOT NULL,
    kind        TEXT        NOT NULL,
    outcome     TEXT        NOT NULL,
    error       TEXT,
    input       TEXT        NOT NULL,
    output      TEXT,
    fuel        BIGINT      NOT NULL,
    duration_us BIGINT      NOT NULL,
    log         TEXT        NOT NULL,
    shadow      BOOLEAN NOT NULL DEFAULT false,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX plugin_runs_by_plugin ON plugin_runs (name, at DESC);
