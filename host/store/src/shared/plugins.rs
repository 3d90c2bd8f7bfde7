//! The plugin registry, once for both backends: a new version numbers
//! itself after the last, activation and rollback move the head between
//! versions, and every change of the active set bumps `plugin_generation`
//! in the same transaction. The backends differ only in their SQL
//! ([`PluginSql`]): PostgreSQL locks the head row (`FOR UPDATE`), SQLite's
//! single writer needs no lock.

use sqlx::Pool;

use super::{
    Arg, Backend, execute, fetch_all, fetch_one, fetch_optional, fetch_optional_row,
    rows::{PluginRow, PluginRunRow},
};
use crate::classify;
use commerce_app::ports::{NewPluginVersion, PluginRecord, PluginRun, StoreError};
use uuid::Uuid;

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
    /// Head $1 gets active $2 and previous $3; its canary ends, and its
    /// shadow too if it was of $2.
    const SET_HEAD: &'static str;
    /// Head $1 gets canary version $2 at percent $3 (both NULL: none).
    const SET_CANARY: &'static str;
    /// Head $1 gets shadow version $2 at $3 parts per million (both NULL: none).
    const SET_SHADOW: &'static str;
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
    /// Versions of name $1 up to $2, except $3 and $4 and any in canary
    /// or shadow, deleted.
    const PRUNE_VERSIONS: &'static str;
    /// A run ($1 id, name, version, kind, outcome, error, input, output,
    /// fuel, duration_us, log, shadow, $13 at).
    const INSERT_RUN: &'static str;
    /// Runs of name $1 with outcome $2 (NULL: any; 'failed': not 'ok'),
    /// newest first, at most $3.
    const RUNS: &'static str;
    /// The run with id $1.
    const RUN: &'static str;
    /// Runs beyond the newest $1 of each plugin, deleted.
    const PRUNE_RUNS: &'static str;
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
    // Written even when `target` is active already: an activation ends a
    // canary (and a shadow of the version), which re-activating the
    // active version is the way to ask for.
    let previous = if active == Some(target) {
        previous
    } else {
        active.or(previous)
    };
    set_head::<DB>(&mut tx, name, Some(target), previous).await?;
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

/// Sets (or clears) a head's canary or shadow: `statement` is
/// [`PluginSql::SET_CANARY`] or [`PluginSql::SET_SHADOW`], `role` the
/// version and its share. False if the plugin or the version is unknown.
async fn set_role<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    statement: &'static str,
    name: &str,
    role: Option<(i64, i64)>,
) -> Result<bool, StoreError> {
    let mut tx = writer.begin().await.map_err(classify)?;
    if lock_head::<DB>(&mut tx, name).await?.is_none() {
        return Ok(false);
    }
    if let Some((version, _)) = role
        && fetch_record::<DB>(&mut tx, name, version).await?.is_none()
    {
        return Ok(false);
    }
    let statement = sqlx::query(statement)
        .arg(name.to_owned())
        .arg(role.map(|(version, _)| version))
        .arg(role.map(|(_, share)| share));
    execute(statement, DB::on(&mut tx)).await?;
    bump_generation::<DB>(&mut tx).await?;
    tx.commit().await.map_err(classify)?;
    Ok(true)
}

/// `PluginRegistry::set_plugin_canary`.
pub(crate) async fn set_canary<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    name: &str,
    canary: Option<(i64, u8)>,
) -> Result<bool, StoreError> {
    let role = canary.map(|(version, percent)| (version, i64::from(percent)));
    set_role::<DB>(writer, DB::SET_CANARY, name, role).await
}

/// `PluginRegistry::set_plugin_shadow`.
pub(crate) async fn set_shadow<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    name: &str,
    shadow: Option<(i64, u32)>,
) -> Result<bool, StoreError> {
    let role = shadow.map(|(version, ppm)| (version, i64::from(ppm)));
    set_role::<DB>(writer, DB::SET_SHADOW, name, role).await
}

/// `PluginRegistry::record_plugin_runs`: one transaction for the batch.
pub(crate) async fn record_runs<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    runs: &[PluginRun],
) -> Result<(), StoreError> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut tx = writer.begin().await.map_err(classify)?;
    for run in runs {
        let statement = sqlx::query(DB::INSERT_RUN)
            .arg(run.id)
            .arg(run.name.clone())
            .arg(run.version)
            .arg(run.kind.as_str())
            .arg(run.outcome.clone())
            .arg(run.error.clone())
            .arg(run.input.to_string())
            .arg(run.output.as_ref().map(serde_json::Value::to_string))
            .arg(count(run.fuel))
            .arg(count(run.duration_us))
            .arg(run.log.clone())
            .arg(run.shadow)
            .arg(run.at);
        execute(statement, DB::on(&mut tx)).await?;
    }
    tx.commit().await.map_err(classify)?;
    Ok(())
}

/// `PluginRegistry::plugin_runs`.
pub(crate) async fn runs<DB: Backend + PluginSql>(
    reader: &Pool<DB>,
    name: &str,
    outcome: Option<&str>,
    limit: u32,
) -> Result<Vec<PluginRun>, StoreError> {
    let statement = sqlx::query(DB::RUNS)
        .arg(name.to_owned())
        .arg(outcome.map(str::to_owned))
        .arg(i64::from(limit));
    fetch_all::<DB, PluginRunRow, _>(statement, DB::pool(reader)).await
}

/// `PluginRegistry::plugin_run`.
pub(crate) async fn run<DB: Backend + PluginSql>(
    reader: &Pool<DB>,
    id: Uuid,
) -> Result<Option<PluginRun>, StoreError> {
    let statement = sqlx::query(DB::RUN).arg(id);
    fetch_optional::<DB, PluginRunRow, _>(statement, DB::pool(reader)).await
}

/// `PluginRegistry::prune_plugin_runs`.
pub(crate) async fn prune_runs<DB: Backend + PluginSql>(
    writer: &Pool<DB>,
    keep: u32,
) -> Result<u64, StoreError> {
    execute(
        sqlx::query(DB::PRUNE_RUNS).arg(i64::from(keep)),
        DB::pool(writer),
    )
    .await
}
