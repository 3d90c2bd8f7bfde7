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
             (h.active_version IS NOT DISTINCT FROM v.version) AS active \
             FROM plugin_versions v JOIN plugin_heads h ON h.name = v.name",
            $($rest),*
        )
    };
}

impl PluginSql for Postgres {
    const FETCH_RECORD: &'static str = select_records!(" WHERE v.name = $1 AND v.version = $2");
    const LIST: &'static str = select_records!(" ORDER BY v.name, v.version");
    const ACTIVE: &'static str =
        select_records!(" AND h.active_version = v.version ORDER BY v.priority, v.name");
    const BUMP_GENERATION: &'static str =
        "UPDATE plugin_generation SET generation = generation + 1 WHERE id = 1";
    const GENERATION: &'static str = "SELECT generation FROM plugin_generation WHERE id = 1";
    const LOCK_HEAD: &'static str =
        "SELECT active_version, previous_version FROM plugin_heads WHERE name = $1 FOR UPDATE";
    const SET_HEAD: &'static str = "UPDATE plugin_heads SET active_version = $2, \
         previous_version = $3, updated_at = now() WHERE name = $1";
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
         WHERE name = $1 AND version <= $2 AND version <> $3 AND version <> $4";
}
