//! The plugin registry on PostgreSQL: the SQL of `shared::plugins`.
//! Changes of the active set take a row lock on the plugin's head
//! (`FOR UPDATE`) and bump `plugin_generation` in the same transaction.

use sqlx::Postgres;

use crate::shared::plugins::PluginSql;

macro_rules! select_records {
    ($($rest:literal),*) => {
        concat!(
            "SELECT v.name, v.version, v.kind, v.sha256, v.config, v.priority, v.listen, v.max_memory, v.max_input, v.created_at, \
             octet_length(v.bytes)::BIGINT AS size, \
             (h.active_version IS NOT DISTINCT FROM v.version) AS active, \
             CASE WHEN h.canary_version = v.version THEN h.canary_percent END AS canary_percent, \
             CASE WHEN h.shadow_version = v.version THEN h.shadow_ppm END AS shadow_ppm \
             FROM plugin_versions v JOIN plugin_heads h ON h.name = v.name",
            $($rest),*
        )
    };
}

macro_rules! select_runs {
    () => {
        "SELECT id, name, version, kind, outcome, error, input, output, fuel, duration_us, \
         log, shadow, at FROM plugin_runs"
    };
}

impl PluginSql for Postgres {
    const FETCH_RECORD: &'static str = select_records!(" WHERE v.name = $1 AND v.version = $2");
    const LIST: &'static str = select_records!(" ORDER BY v.name, v.version");
    const ACTIVE: &'static str = select_records!(
        " AND (h.active_version = v.version OR h.canary_version = v.version \
         OR h.shadow_version = v.version) ORDER BY v.priority, v.name"
    );
    const BUMP_GENERATION: &'static str =
        "UPDATE plugin_generation SET generation = generation + 1 WHERE id = 1";
    const GENERATION: &'static str = "SELECT generation FROM plugin_generation WHERE id = 1";
    const LOCK_HEAD: &'static str =
        "SELECT active_version, previous_version FROM plugin_heads WHERE name = $1 FOR UPDATE";
    const SET_HEAD: &'static str = "UPDATE plugin_heads SET active_version = $2, \
         previous_version = $3, canary_version = NULL, canary_percent = NULL, \
         shadow_ppm = CASE WHEN shadow_version = $2 THEN NULL ELSE shadow_ppm END, \
         shadow_version = CASE WHEN shadow_version = $2 THEN NULL ELSE shadow_version END, \
         updated_at = now() WHERE name = $1";
    const SET_CANARY: &'static str = "UPDATE plugin_heads SET canary_version = $2, \
         canary_percent = $3, updated_at = now() WHERE name = $1";
    const SET_SHADOW: &'static str = "UPDATE plugin_heads SET shadow_version = $2, \
         shadow_ppm = $3, updated_at = now() WHERE name = $1";
    const INSERT_HEAD: &'static str = "INSERT INTO plugin_heads (name, kind, updated_at) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
    const HEAD_KIND: &'static str = "SELECT kind FROM plugin_heads WHERE name = $1 FOR UPDATE";
    const INSERT_VERSION: &'static str = "INSERT INTO plugin_versions \
         (name, version, kind, sha256, bytes, config, priority, created_at, listen, \
         max_memory, max_input) \
         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
         FROM plugin_versions WHERE name = $1 RETURNING version";
    const MAX_VERSION: &'static str = "SELECT MAX(version) FROM plugin_versions WHERE name = $1";
    const DELETE_HEAD: &'static str = "DELETE FROM plugin_heads WHERE name = $1";
    const DELETE_VERSIONS: &'static str = "DELETE FROM plugin_versions WHERE name = $1";
    const BYTES: &'static str =
        "SELECT bytes FROM plugin_versions WHERE name = $1 AND version = $2";
    const PRUNE_VERSIONS: &'static str = "DELETE FROM plugin_versions \
         WHERE name = $1 AND version <= $2 AND version <> $3 AND version <> $4 \
         AND NOT EXISTS (SELECT 1 FROM plugin_heads h WHERE h.name = plugin_versions.name \
         AND (h.canary_version = plugin_versions.version \
         OR h.shadow_version = plugin_versions.version))";
    const INSERT_RUN: &'static str = "INSERT INTO plugin_runs \
         (id, name, version, kind, outcome, error, input, output, fuel, duration_us, log, \
         shadow, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    const RUNS: &'static str = concat!(
        select_runs!(),
        " WHERE name = $1 AND ($2::TEXT IS NULL \
         OR ($2 = 'failed' AND outcome <> 'ok') OR outcome = $2) \
         ORDER BY at DESC LIMIT $3"
    );
    const RUN: &'static str = concat!(select_runs!(), " WHERE id = $1");
    const PRUNE_RUNS: &'static str = "DELETE FROM plugin_runs WHERE id IN (SELECT id FROM \
         (SELECT id, row_number() OVER (PARTITION BY name ORDER BY at DESC) AS n \
         FROM plugin_runs) ranked WHERE n > $1)";
}
