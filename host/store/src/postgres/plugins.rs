//! The plugin registry on PostgreSQL. Changes of the active set take a row
//! lock on the plugin's head and bump `plugin_generation` in the same
//! transaction.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PgStore;
use crate::{classify, corrupt};
use commerce_app::extensions::PluginKind;
use commerce_app::ports::{NewPluginVersion, PluginRecord, PluginRegistry, StoreError};

const RECORD_COLUMNS: &str = "v.name, v.version, v.kind, v.sha256, v.config, v.priority, \
     v.created_at, octet_length(v.bytes)::BIGINT AS size, \
     (h.active_version IS NOT DISTINCT FROM v.version) AS active";

fn record(row: &PgRow) -> Result<PluginRecord, StoreError> {
    let kind: String = row.try_get("kind").map_err(classify)?;
    Ok(PluginRecord {
        name: row.try_get("name").map_err(classify)?,
        version: row.try_get("version").map_err(classify)?,
        kind: PluginKind::parse(&kind).ok_or_else(|| corrupt("plugin kind", &kind))?,
        sha256: row.try_get("sha256").map_err(classify)?,
        config: row.try_get("config").map_err(classify)?,
        priority: row.try_get("priority").map_err(classify)?,
        size: row.try_get("size").map_err(classify)?,
        active: row.try_get("active").map_err(classify)?,
        created_at: row.try_get("created_at").map_err(classify)?,
    })
}

async fn fetch_record(
    conn: &mut PgConnection,
    name: &str,
    version: i64,
) -> Result<Option<PluginRecord>, StoreError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM plugin_versions v JOIN plugin_heads h ON h.name = v.name \
         WHERE v.name = $1 AND v.version = $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(version)
        .fetch_optional(conn)
        .await
        .map_err(classify)?
        .as_ref()
        .map(record)
        .transpose()
}

async fn bump_generation(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("UPDATE plugin_generation SET generation = generation + 1 WHERE id = 1")
        .execute(conn)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Locks a plugin's head: (active, previous) versions.
async fn lock_head(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<(Option<i64>, Option<i64>)>, StoreError> {
    let row = sqlx::query(
        "SELECT active_version, previous_version FROM plugin_heads WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(classify)?;
    row.map(|r| {
        Ok((
            r.try_get("active_version").map_err(classify)?,
            r.try_get("previous_version").map_err(classify)?,
        ))
    })
    .transpose()
}

async fn set_head(
    conn: &mut PgConnection,
    name: &str,
    active: Option<i64>,
    previous: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE plugin_heads SET active_version = $2, previous_version = $3, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(active)
    .bind(previous)
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    bump_generation(conn).await
}

#[async_trait]
impl PluginRegistry for PgStore {
    async fn insert_plugin_version(
        &self,
        new: NewPluginVersion,
    ) -> Result<Option<PluginRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query(
            "INSERT INTO plugin_heads (name, kind, updated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(new.at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let kind: String =
            sqlx::query_scalar("SELECT kind FROM plugin_heads WHERE name = $1 FOR UPDATE")
                .bind(&new.name)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
        if kind != new.kind.as_str() {
            return Ok(None);
        }
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO plugin_versions (name, version, kind, sha256, bytes, config, priority, created_at) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6, $7 FROM plugin_versions WHERE name = $1 \
             RETURNING version",
        )
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.sha256)
        .bind(&new.bytes)
        .bind(&new.config)
        .bind(new.priority)
        .bind(new.at)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        let record = fetch_record(&mut tx, &new.name, version).await?;
        tx.commit().await.map_err(classify)?;
        Ok(record)
    }

    async fn list_plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM plugin_versions v JOIN plugin_heads h ON h.name = v.name \
             ORDER BY v.name, v.version"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .iter()
            .map(record)
            .collect()
    }

    async fn activate_plugin(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<PluginRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let Some((active, previous)) = lock_head(&mut tx, name).await? else {
            return Ok(None);
        };
        let target: Option<i64> = match version {
            Some(v) => Some(v),
            None => sqlx::query_scalar("SELECT MAX(version) FROM plugin_versions WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?,
        };
        let Some(target) = target else {
            return Ok(None);
        };
        if fetch_record(&mut tx, name, target).await?.is_none() {
            return Ok(None);
        }
        if active != Some(target) {
            let previous = active.or(previous);
            set_head(&mut tx, name, Some(target), previous).await?;
        }
        let record = fetch_record(&mut tx, name, target).await?;
        tx.commit().await.map_err(classify)?;
        Ok(record)
    }

    async fn rollback_plugin(&self, name: &str) -> Result<Option<PluginRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let Some((active, Some(previous))) = lock_head(&mut tx, name).await? else {
            return Ok(None);
        };
        if fetch_record(&mut tx, name, previous).await?.is_none() {
            return Ok(None);
        }
        set_head(&mut tx, name, Some(previous), active).await?;
        let record = fetch_record(&mut tx, name, previous).await?;
        tx.commit().await.map_err(classify)?;
        Ok(record)
    }

    async fn remove_plugin(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let removed = sqlx::query("DELETE FROM plugin_heads WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        sqlx::query("DELETE FROM plugin_versions WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if removed > 0 {
            bump_generation(&mut tx).await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(removed > 0)
    }

    async fn active_plugins(&self) -> Result<(i64, Vec<PluginRecord>), StoreError> {
        // Generation first: a change made between the two reads shows up
        // as a newer generation at the next poll, never as a missed one.
        let generation = self.plugin_generation().await?;
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM plugin_versions v JOIN plugin_heads h \
             ON h.name = v.name AND h.active_version = v.version ORDER BY v.priority, v.name"
        );
        let records = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .iter()
            .map(record)
            .collect::<Result<_, _>>()?;
        Ok((generation, records))
    }

    async fn plugin_generation(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT generation FROM plugin_generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn plugin_bytes(&self, name: &str, version: i64) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT bytes FROM plugin_versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)
    }
}
