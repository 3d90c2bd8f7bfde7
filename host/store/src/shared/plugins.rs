//! The plugin registry, once for both backends: a new version numbers
//! itself after the last, activation and rollback move the head between
//! versions, and every change of the active set bumps `plugin_generation`
//! in the same transaction. The backends differ only in their SQL
//! ([`PluginSql`]): PostgreSQL locks the head row (`FOR UPDATE`), SQLite's
//! single writer needs no lock.

use sqlx::Pool;

use super::{
    Arg, Backend, execute, fetch_all, fetch_one, fetch_optional, fetch_optional_row,
    rows::PluginRow,
};
use crate::classify;
use commerce_app::ports::{NewPluginVersion, PluginRecord, StoreError};

/// The statements of the registry, in the backend's SQL. Numbered
/// parameters as in the comments.
pub(crate) trait PluginSql {
    /// A record by (name $1, version $2).
    const FETCH_RECORD: &'static str;
    /// Every record, by name and version.
    const LIST: &'static str;
    /// The active records, by priority and name.
    const ACTIVE: &'static str;
    const BUMP_GENERATION: &'static str;
    const GENERATION: &'static str;
    /// (active_version, previous_version) of head $1, locked where needed.
    const LOCK_HEAD: &'static str;
    /// Head $1 gets active $2 and previous $3.
    const SET_HEAD: &'static str;
    /// Head (name $1, kind $2, updated_at $3) unless it exists.
    const INSERT_HEAD: &'static str;
    /// The kind of head $1, locked where needed.
    const HEAD_KIND: &'static str;
    /// Version after the last of name $1 (kind $2, sha256 $3, bytes $4,
    /// config $5, priority $6, created_at $7, listen $8, max_memory $9,
    /// max_input $10), returning it.
    const INSERT_VERSION: &'static str;
    const MAX_VERSION: &'static str;
    const DELETE_HEAD: &'static str;
    const DELETE_VERSIONS: &'static str;
    /// The bytes of (name $1, version $2).
    const BYTES: &'static str;
    /// Versions of name $1 up to $2, except $3 and $4, deleted.
    const PRUNE_VERSIONS: &'static str;
}

async fn fetch_record<DB: Backend + PluginSql>(
    conn: &mut DB::Connection,
    name: &str,
    version: i64,
) -> Result<Option<PluginRecord>, StoreError> {
    let statement = sqlx::query(DB::FETCH_RECORD)
        .arg(name.to_owned())
        .arg(version);
    fetch_optional::<DB, PluginRow, _>(statement, DB::on(conn)).await
}

async fn bump_generation<DB: Backend + PluginSql>(
    conn: &mut DB::Connection,
) -> Result<(), StoreError> {
    execute(sqlx::query(DB::BUMP_GENERATION), DB::on(conn)).await?;
    Ok(())
}

/// A plugin's head, (active, previous) versions, locked where needed.
async fn lock_head<DB: Backend + PluginSql>(
    conn: &mut DB::Connection,
    name: &str,
) -> Result<Option<(Option<i64>, Option<i64>)>, StoreError> {
    let statement = sqlx::query(DB::LOCK_HEAD).arg(name.to_owned());
    fetch_optional_row(statement, DB::on(conn)).await
}

async fn set_head<DB: Backend + PluginSql>(
    conn: &mut DB::Connection,
    name: &str,
    active: Option<i64>,
    previous: Option<i64>,
) -> Result<(), StoreError> {
    let statement = sqlx::query(DB::SET_HEAD)
        .arg(name.to_owned())
        .arg(active)
        .arg(previous);
    execute(statement, DB::on(&mut *conn)).await?;
    bump_generation::<DB>(conn).await
}

/// `PluginRegistry::insert_plugin_version`.
pub(crate) async fn insert_version<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    new: NewPluginVersion,
) -> Result<Option<PluginRecord>, StoreError> {
    let mut tx = writer.begin().await.map_err(classify)?;
    let statement = sqlx::query(DB::INSERT_HEAD)
        .arg(new.name.clone())
        .arg(new.kind.as_str().to_owned())
        .arg(new.at);
    execute(statement, DB::on(&mut tx)).await?;
    let statement = sqlx::query(DB::HEAD_KIND).arg(new.name.clone());
    let (kind,): (String,) = fetch_one(statement, DB::on(&mut tx)).await?;
    if kind != new.kind.as_str() {
        return Ok(None);
    }
    let statement = sqlx::query(DB::INSERT_VERSION)
        .arg(new.name.clone())
        .arg(new.kind.as_str().to_owned())
        .arg(new.sha256)
        .arg(new.bytes)
        .arg(new.config)
        .arg(new.priority)
        .arg(new.at)
        .arg(new.listen.map(|points| points.join(",")))
        .arg(new.limits.max_memory.map(bytes_column))
        .arg(new.limits.max_input.map(bytes_column));
    let (version,): (i64,) = fetch_one(statement, DB::on(&mut tx)).await?;
    let record = fetch_record::<DB>(&mut tx, &new.name, version).await?;
    tx.commit().await.map_err(classify)?;
    Ok(record)
}

/// A limit in bytes as an integer column (limits are far below `i64::MAX`).
fn bytes_column(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// `PluginRegistry::prune_plugin_versions`.
pub(crate) async fn prune<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    name: &str,
    keep: u32,
) -> Result<u64, StoreError> {
    let mut tx = writer.begin().await.map_err(classify)?;
    let Some((active, previous)) = lock_head::<DB>(&mut tx, name).await? else {
        return Ok(0);
    };
    let statement = sqlx::query(DB::MAX_VERSION).arg(name.to_owned());
    let (newest,) = fetch_one::<DB, (Option<i64>,)>(statement, DB::on(&mut tx)).await?;
    let up_to = newest.unwrap_or(0) - i64::from(keep);
    if up_to < 1 {
        return Ok(0);
    }
    let statement = sqlx::query(DB::PRUNE_VERSIONS)
        .arg(name.to_owned())
        .arg(up_to)
        .arg(active.unwrap_or(-1))
        .arg(previous.unwrap_or(-1));
    let pruned = execute(statement, DB::on(&mut tx)).await?;
    tx.commit().await.map_err(classify)?;
    Ok(pruned)
}

/// `PluginRegistry::list_plugins`.
pub(crate) async fn list<DB: Backend + PluginSql>(
    reader: &Pool<DB>,
) -> Result<Vec<PluginRecord>, StoreError> {
    fetch_all::<DB, PluginRow, _>(sqlx::query(DB::LIST), DB::pool(reader)).await
}

/// `PluginRegistry::activate_plugin`: `version`, or else the latest,
/// becomes active; the one it replaces becomes the rollback target.
pub(crate) async fn activate<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    name: &str,
    version: Option<i64>,
) -> Result<Option<PluginRecord>, StoreError> {
    let mut tx = writer.begin().await.map_err(classify)?;
    let Some((active, previous)) = lock_head::<DB>(&mut tx, name).await? else {
        return Ok(None);
    };
    let target: Option<i64> = match version {
        Some(v) => Some(v),
        None => {
            let statement = sqlx::query(DB::MAX_VERSION).arg(name.to_owned());
            fetch_one::<DB, (Option<i64>,)>(statement, DB::on(&mut tx))
                .await?
                .0
        }
    };
    let Some(target) = target else {
        return Ok(None);
    };
    if fetch_record::<DB>(&mut tx, name, target).await?.is_none() {
        return Ok(None);
    }
    if active != Some(target) {
        let previous = active.or(previous);
        set_head::<DB>(&mut tx, name, Some(target), previous).await?;
    }
    let record = fetch_record::<DB>(&mut tx, name, target).await?;
    tx.commit().await.map_err(classify)?;
    Ok(record)
}

/// `PluginRegistry::rollback_plugin`: active and previous swap places.
pub(crate) async fn rollback<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    name: &str,
) -> Result<Option<PluginRecord>, StoreError> {
    let mut tx = writer.begin().await.map_err(classify)?;
    let Some((active, Some(previous))) = lock_head::<DB>(&mut tx, name).await? else {
        return Ok(None);
    };
    if fetch_record::<DB>(&mut tx, name, previous).await?.is_none() {
        return Ok(None);
    }
    set_head::<DB>(&mut tx, name, Some(previous), active).await?;
    let record = fetch_record::<DB>(&mut tx, name, previous).await?;
    tx.commit().await.map_err(classify)?;
    Ok(record)
}

/// `PluginRegistry::remove_plugin`.
pub(crate) async fn remove<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    name: &str,
) -> Result<bool, StoreError> {
    let mut tx = writer.begin().await.map_err(classify)?;
    let removed = execute(
        sqlx::query(DB::DELETE_HEAD).arg(name.to_owned()),
        DB::on(&mut tx),
    )
    .await?;
    execute(
        sqlx::query(DB::DELETE_VERSIONS).arg(name.to_owned()),
        DB::on(&mut tx),
    )
    .await?;
    if removed > 0 {
        bump_generation::<DB>(&mut tx).await?;
    }
    tx.commit().await.map_err(classify)?;
    Ok(removed > 0)
}

/// `PluginRegistry::active_plugins`.
pub(crate) async fn active<DB: Backend + PluginSql>(
    reader: &Pool<DB>,
) -> Result<(i64, Vec<PluginRecord>), StoreError> {
    // Generation first: a change made between the two reads shows up
    // as a newer generation at the next poll, never as a missed one.
    let generation = self::generation(reader).await?;
    let records = fetch_all::<DB, PluginRow, _>(sqlx::query(DB::ACTIVE), DB::pool(reader)).await?;
    Ok((generation, records))
}

/// `PluginRegistry::plugin_generation`.
pub(crate) async fn generation<DB: Backend + PluginSql>(
    reader: &Pool<DB>,
) -> Result<i64, StoreError> {
    let (generation,) = fetch_one(sqlx::query(DB::GENERATION), DB::pool(reader)).await?;
    Ok(generation)
}

/// `PluginRegistry::plugin_bytes`.
pub(crate) async fn bytes<DB: Backend + PluginSql>(
    reader: &Pool<DB>,
    name: &str,
    version: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = sqlx::query(DB::BYTES)
        .arg(name.to_owned())
        .arg(version)
        .fetch_optional(DB::pool(reader))
        .await
        .map_err(classify)?;
    Ok(row
        .as_ref()
        .map(DB::read)
        .transpose()?
        .map(|(bytes,): (Vec<u8>,)| bytes))
}
