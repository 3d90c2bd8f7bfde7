//! The Rust both SQL backends share: row types, the decisions of each
//! port, and the binds of each statement, written once and generic over
//! [`Backend`]. A backend contributes only what truly differs: its SQL
//! text (placeholders, `FOR UPDATE SKIP LOCKED`, functions), how a column
//! is encoded (see [`columns`]), and its own machinery (PostgreSQL's
//! batching and read coalescing, SQLite's single writer).
//!
//! Layout: [`columns`] (encodings that differ), [`rows`] (one row type
//! and one mapping per table), then one module per port family.

pub(crate) mod cart;
pub(crate) mod columns;
pub(crate) mod events;
pub(crate) mod inventory;
pub(crate) mod plugins;
pub(crate) mod ports;
pub(crate) mod rows;
pub(crate) mod saga;

use chrono::{DateTime, Utc};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};
use uuid::Uuid;

use crate::classify;
use columns::{Amount, Micros, Millis};
use commerce_app::ports::StoreError;
use commerce_app::saga::SagaData;
use commerce_app::views::OrderLineView;
use commerce_domain::Adjustment;

/// A statement with its arguments, on backend `DB`.
pub(crate) type Stmt<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// `DB` can bind a `T`. The blanket implementation holds for every type
/// sqlx encodes; naming the types in [`Backend`]'s supertraits lets the
/// shared code bind them without repeating the bounds at every function.
pub(crate) trait Bind<T>: Database {
    fn bind_value<'q>(statement: Stmt<'q, Self>, value: T) -> Stmt<'q, Self>;
}

impl<DB: Database, T> Bind<T> for DB
where
    T: for<'t> Encode<'t, DB> + Type<DB>,
{
    fn bind_value<'q>(statement: Stmt<'q, Self>, value: T) -> Stmt<'q, Self> {
        statement.bind(value)
    }
}

/// `DB`'s rows decode into an `O` (a row type or a tuple of columns).
pub(crate) trait Reads<O>: Database {
    fn read(row: &Self::Row) -> Result<O, StoreError>;
}

impl<DB: Database, O> Reads<O> for DB
where
    O: for<'r> FromRow<'r, DB::Row>,
{
    fn read(row: &Self::Row) -> Result<O, StoreError> {
        O::from_row(row).map_err(classify)
    }
}

/// `.arg(value)`: `.bind(value)` for the shared code.
pub(crate) trait Arg<DB: Database>: Sized {
    fn arg<T>(self, value: T) -> Self
    where
        DB: Bind<T>;
}

impl<DB: Database> Arg<DB> for Stmt<'_, DB> {
    fn arg<T>(self, value: T) -> Self
    where
        DB: Bind<T>,
    {
        DB::bind_value(self, value)
    }
}

/// A SQL backend the shared code runs on: `sqlx::Sqlite` or
/// `sqlx::Postgres`. The supertraits list every column type the shared
/// code binds and every row it reads.
pub(crate) trait Backend:
    Database<Arguments: IntoArguments<Self> + Send>
    + Bind<Uuid>
    + Bind<Option<Uuid>>
    + Bind<i64>
    + Bind<Option<i64>>
    + Bind<i32>
    + Bind<bool>
    + Bind<DateTime<Utc>>
    + Bind<Amount>
    + Bind<Micros>
    + Bind<Millis>
    + Bind<Option<&'static str>>
    + Bind<&'static str>
    + Bind<String>
    + Bind<Option<String>>
    + Bind<Vec<u8>>
    + Bind<Option<Micros>>
    + for<'a> Bind<Json<&'a serde_json::Value>>
    + for<'a> Bind<Json<&'a Vec<OrderLineView>>>
    + for<'a> Bind<Json<&'a Vec<Adjustment>>>
    + for<'a> Bind<Json<&'a SagaData>>
    + Reads<rows::ViewRow>
    + Reads<rows::EventRow>
    + Reads<rows::FeedRow>
    + Reads<rows::ProductRow>
    + Reads<rows::IdempotencyRow>
    + Reads<rows::SagaRow>
    + Reads<rows::StepRow>
    + Reads<rows::ReservationRow>
    + Reads<rows::PluginRow>
    + Reads<rows::PluginRunRow>
    + Reads<(i64,)>
    + Reads<(Option<i64>,)>
    + Reads<(String,)>
    + Reads<(Vec<u8>,)>
    + Reads<(Option<i64>, Option<i64>)>
    + Reads<(i64, i64)>
    + Reads<(String, i64)>
    + Reads<(Uuid,)>
    + Reads<(Uuid, String)>
    + Reads<(String, i64, i64)>
{
    /// A connection (or an open transaction) as an executor.
    fn on(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self>;

    /// A pool as an executor.
    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self>;

    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

impl Backend for sqlx::Sqlite {
    fn on(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self> {
        conn
    }

    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self> {
        pool
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Backend for sqlx::Postgres {
    fn on(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self> {
        conn
    }

    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self> {
        pool
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// Runs `statement` and maps every row it returns through row type `R`.
pub(crate) async fn fetch_all<'c, DB, R, T>(
    statement: Stmt<'_, DB>,
    executor: impl Executor<'c, Database = DB>,
) -> Result<Vec<T>, StoreError>
where
    DB: Backend + Reads<R>,
    T: TryFrom<R, Error = StoreError>,
{
    statement
        .fetch_all(executor)
        .await
        .map_err(classify)?
        .iter()
        .map(|row| DB::read(row).and_then(T::try_from))
        .collect()
}

/// Runs `statement` and maps the row it may return through row type `R`.
pub(crate) async fn fetch_optional<'c, DB, R, T>(
    statement: Stmt<'_, DB>,
    executor: impl Executor<'c, Database = DB>,
) -> Result<Option<T>, StoreError>
where
    DB: Backend + Reads<R>,
    T: TryFrom<R, Error = StoreError>,
{
    statement
        .fetch_optional(executor)
        .await
        .map_err(classify)?
        .as_ref()
        .map(|row| DB::read(row).and_then(T::try_from))
        .transpose()
}

/// Runs `statement` and reads every row it returns as `O` (a tuple of
/// columns).
pub(crate) async fn fetch_rows<'c, DB, O>(
    statement: Stmt<'_, DB>,
    executor: impl Executor<'c, Database = DB>,
) -> Result<Vec<O>, StoreError>
where
    DB: Backend + Reads<O>,
{
    let rows = statement.fetch_all(executor).await.map_err(classify)?;
    rows.iter().map(DB::read).collect()
}

/// Runs `statement` and reads the row it may return as `O`.
pub(crate) async fn fetch_optional_row<'c, DB, O>(
    statement: Stmt<'_, DB>,
    executor: impl Executor<'c, Database = DB>,
) -> Result<Option<O>, StoreError>
where
    DB: Backend + Reads<O>,
{
    let row = statement.fetch_optional(executor).await.map_err(classify)?;
    row.as_ref().map(DB::read).transpose()
}

/// Runs `statement` and reads the one row it returns as `O`.
pub(crate) async fn fetch_one<'c, DB, O>(
    statement: Stmt<'_, DB>,
    executor: impl Executor<'c, Database = DB>,
) -> Result<O, StoreError>
where
    DB: Backend + Reads<O>,
{
    let row = statement.fetch_one(executor).await.map_err(classify)?;
    DB::read(&row)
}

/// Runs `statement`; the number of rows it changed.
pub(crate) async fn execute<'c, DB: Backend>(
    statement: Stmt<'_, DB>,
    executor: impl Executor<'c, Database = DB>,
) -> Result<u64, StoreError> {
    Ok(DB::rows_affected(
        &statement.execute(executor).await.map_err(classify)?,
    ))
}
