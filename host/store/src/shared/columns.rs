//! Column encodings that differ between the backends, as newtypes that
//! encode and decode on both, so that row types and binds are written once.
//!
//! - [`Amount`]: money. PostgreSQL `NUMERIC`; SQLite has no decimal type
//!   and keeps the exact decimal text.
//! - [`Micros`]: an instant the workers compare. PostgreSQL `TIMESTAMPTZ`;
//!   SQLite an `INTEGER` of Unix microseconds, so that comparisons and
//!   `ORDER BY` are numeric.
//! - [`Millis`]: a cart's expiry. PostgreSQL `TIMESTAMPTZ`; SQLite an
//!   `INTEGER` of Unix milliseconds (the carts table's encoding).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};

/// A decimal amount of money.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Amount(pub Decimal);

/// An instant stored as Unix microseconds where the backend needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Micros(pub DateTime<Utc>);

/// An instant stored as Unix milliseconds where the backend needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Millis(pub DateTime<Utc>);

type Buffer<DB> = <DB as Database>::ArgumentBuffer;

impl Type<Sqlite> for Amount {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Amount {
    fn encode_by_ref(&self, buf: &mut Buffer<Sqlite>) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0.to_string(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Amount {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        let amount = Decimal::from_str(text)
            .map_err(|_| format!("stored amount {text:?} does not parse"))?;
        Ok(Amount(amount))
    }
}

impl Type<Postgres> for Amount {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <Decimal as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <Decimal as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Amount {
    fn encode_by_ref(&self, buf: &mut Buffer<Postgres>) -> Result<IsNull, BoxDynError> {
        <Decimal as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Amount {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        <Decimal as Decode<Postgres>>::decode(value).map(Amount)
    }
}

impl Type<Sqlite> for Micros {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Micros {
    fn encode_by_ref(&self, buf: &mut Buffer<Sqlite>) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(self.0.timestamp_micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Micros {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(Micros)
            .ok_or_else(|| format!("stored time {micros} is out of range").into())
    }
}

impl Type<Postgres> for Micros {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Micros {
    fn encode_by_ref(&self, buf: &mut Buffer<Postgres>) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Micros {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(Micros)
    }
}

impl Type<Sqlite> for Millis {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Millis {
    fn encode_by_ref(&self, buf: &mut Buffer<Sqlite>) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(self.0.timestamp_millis(), buf)
    }
}

impl Type<Postgres> for Millis {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Millis {
    fn encode_by_ref(&self, buf: &mut Buffer<Postgres>) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}
