//! One row type per table or result the adapters read, decoded by
//! column name from either backend's row (`rows!`), and one conversion
//! into the application's type. A stored value that does not parse back
//! is corruption: `StoreError::Unexpected`.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};
use uuid::Uuid;

use super::columns::{Amount, Micros};
use crate::{corrupt, parse_currency, parse_sku, parse_status};
use commerce_app::extensions::PluginKind;
use commerce_app::ports::{
    FeedCursor, FeedEvent, PPM, PluginLimits, PluginRecord, PluginRun, Product, Reservation,
    ReservationState, StoreError, StoredEvent,
};
use commerce_app::saga::{SagaData, SagaInstance, SagaStepRecord};
use commerce_app::views::{OrderLineView, OrderView};
use commerce_domain::Adjustment;

/// Declares row structs and their `FromRow` for any backend: each field
/// is read from the column of its name.
macro_rules! rows {
    ($(
        $(#[$meta:meta])*
        $vis:vis struct $name:ident { $($fvis:vis $field:ident: $ty:ty),* $(,)? }
    )*) => {$(
        $(#[$meta])*
        $vis struct $name { $($fvis $field: $ty),* }

        impl<'r, R: Row> FromRow<'r, R> for $name
        where
            &'r str: ColumnIndex<R>,
            $($ty: Decode<'r, R::Database> + Type<R::Database>,)*
        {
            fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
                Ok($name { $($field: row.try_get(stringify!($field))?),* })
            }
        }
    )*};
}

rows! {
    /// A row of `order_views`.
    pub(crate) struct ViewRow {
        order_id: Uuid,
        customer_id: Uuid,
        status: String,
        currency: String,
        subtotal_amount: Amount,
        adjustments: Json<Vec<Adjustment>>,
        total_amount: Amount,
        items: Json<Vec<OrderLineView>>,
        status_reason: Option<String>,
        version: i64,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        refunded_amount: Amount,
    }
}

impl TryFrom<ViewRow> for OrderView {
    type Error = StoreError;

    fn try_from(row: ViewRow) -> Result<Self, StoreError> {
        let currency = parse_currency(&row.currency)?;
        Ok(OrderView {
            id: row.order_id,
            customer_id: row.customer_id,
            status: parse_status(&row.status)?,
            currency: currency.code().to_owned(),
            items: row.items.0,
            subtotal: row.subtotal_amount.0,
            adjustments: row.adjustments.0,
            total: row.total_amount.0,
            refunded: {
                // Zero reads back without its scale on PostgreSQL.
                let mut refunded = row.refunded_amount.0;
                refunded.rescale(currency.minor_digits());
                refunded
            },
            status_reason: row.status_reason,
            version: row.version as u64,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

rows! {
    /// A row of `events`.
    pub(crate) struct EventRow {
        position: i64,
        event_id: Uuid,
        aggregate_id: Uuid,
        aggregate_type: String,
        version: i64,
        event_type: String,
        schema_version: i32,
        event_data: Json<serde_json::Value>,
        created_at: DateTime<Utc>,
    }
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        Ok(StoredEvent {
            position: row.position,
            event_id: row.event_id,
            aggregate_id: row.aggregate_id,
            aggregate_type: row.aggregate_type,
            version: row.version as u64,
            event_type: row.event_type,
            schema_version: row.schema_version as u32,
            data: row.event_data.0,
            recorded_at: row.created_at,
        })
    }
}

/// A row of `events` read with its transaction, for the feed.
pub(crate) struct FeedRow {
    tx_id: i64,
    event: EventRow,
}

impl<'r, R: Row> FromRow<'r, R> for FeedRow
where
    &'r str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    EventRow: FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(FeedRow {
            tx_id: row.try_get("tx_id")?,
            event: EventRow::from_row(row)?,
        })
    }
}

impl TryFrom<FeedRow> for FeedEvent {
    type Error = StoreError;

    fn try_from(row: FeedRow) -> Result<Self, StoreError> {
        Ok(FeedEvent {
            cursor: FeedCursor {
                tx: row.tx_id,
                position: row.event.position,
            },
            event: row.event.try_into()?,
        })
    }
}

rows! {
    /// A row of `idempotency_keys`, without the key it was found by.
    pub(crate) struct IdempotencyRow {
        pub request_hash: String,
        pub order_id: Uuid,
    }
}

rows! {
    /// A row of `products`.
    pub(crate) struct ProductRow {
        sku: String,
        name: String,
        unit_price: Amount,
        currency: String,
        on_hand: i64,
        reserved: i64,
        version: i64,
        updated_at: DateTime<Utc>,
    }
}

impl TryFrom<ProductRow> for Product {
    type Error = StoreError;

    fn try_from(row: ProductRow) -> Result<Self, StoreError> {
        Ok(Product {
            sku: parse_sku(&row.sku)?,
            name: row.name,
            unit_price: row.unit_price.0,
            currency: parse_currency(&row.currency)?,
            on_hand: row.on_hand,
            reserved: row.reserved,
            version: row.version,
            updated_at: row.updated_at,
        })
    }
}

rows! {
    /// A row of `reservations`.
    pub(crate) struct ReservationRow {
        order_id: Uuid,
        sku: String,
        quantity: i64,
        state: String,
        expires_at: Micros,
    }
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = StoreError;

    fn try_from(row: ReservationRow) -> Result<Self, StoreError> {
        Ok(Reservation {
            order_id: row.order_id,
            sku: parse_sku(&row.sku)?,
            quantity: row.quantity,
            state: ReservationState::parse(&row.state)
                .ok_or_else(|| corrupt("reservation state", &row.state))?,
            expires_at: row.expires_at.0,
        })
    }
}

rows! {
    /// A row of `saga_instances` (the columns each backend's saga SQL selects).
    pub(crate) struct SagaRow {
        saga_id: Uuid,
        saga_type: String,
        correlation_id: Uuid,
        saga_data: Json<SagaData>,
        revision: i64,
        attempts: i32,
        next_attempt_at: Micros,
        lease_owner: Option<String>,
        lease_until: Option<Micros>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }
}

impl TryFrom<SagaRow> for SagaInstance {
    type Error = StoreError;

    fn try_from(row: SagaRow) -> Result<Self, StoreError> {
        Ok(SagaInstance {
            saga_id: row.saga_id,
            saga_type: row.saga_type,
            correlation_id: row.correlation_id,
            data: row.saga_data.0,
            revision: row.revision,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at.0,
            lease_owner: row.lease_owner,
            lease_until: row.lease_until.map(|at| at.0),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

rows! {
    /// A row of `saga_steps`.
    pub(crate) struct StepRow {
        record_id: Uuid,
        saga_id: Uuid,
        step: String,
        phase: String,
        outcome: String,
        detail: Option<String>,
        attempt: i32,
        at: DateTime<Utc>,
    }
}

impl TryFrom<StepRow> for SagaStepRecord {
    type Error = StoreError;

    fn try_from(row: StepRow) -> Result<Self, StoreError> {
        Ok(SagaStepRecord {
            record_id: row.record_id,
            saga_id: row.saga_id,
            step: row.step,
            phase: row.phase,
            outcome: row.outcome,
            detail: row.detail,
            attempt: row.attempt,
            at: row.at,
        })
    }
}

rows! {
    /// A plugin version with its head (the columns each backend's registry SQL selects).
    pub(crate) struct PluginRow {
        name: String,
        version: i64,
        kind: String,
        sha256: String,
        config: String,
        priority: i32,
        listen: Option<String>,
        max_memory: Option<i64>,
        max_input: Option<i64>,
        size: i64,
        active: bool,
        canary_percent: Option<i32>,
        shadow_ppm: Option<i64>,
        created_at: DateTime<Utc>,
    }

    /// A captured plugin call.
    pub(crate) struct PluginRunRow {
        id: Uuid,
        name: String,
        version: i64,
        kind: String,
        outcome: String,
        error: Option<String>,
        input: String,
        output: Option<String>,
        fuel: i64,
        duration_us: i64,
        log: String,
        shadow: bool,
        at: DateTime<Utc>,
    }
}

impl TryFrom<PluginRunRow> for PluginRun {
    type Error = StoreError;

    fn try_from(row: PluginRunRow) -> Result<Self, StoreError> {
        let json =
            |what: &str, text: &str| serde_json::from_str(text).map_err(|_| corrupt(what, text));
        Ok(PluginRun {
            kind: PluginKind::parse(&row.kind).ok_or_else(|| corrupt("plugin kind", &row.kind))?,
            input: json("plugin run input", &row.input)?,
            output: row
                .output
                .as_deref()
                .map(|text| json("plugin run output", text))
                .transpose()?,
            id: row.id,
            name: row.name,
            version: row.version,
            outcome: row.outcome,
            error: row.error,
            fuel: row.fuel.max(0).unsigned_abs(),
            duration_us: row.duration_us.max(0).unsigned_abs(),
            log: row.log,
            shadow: row.shadow,
            at: row.at,
        })
    }
}

impl TryFrom<PluginRow> for PluginRecord {
    type Error = StoreError;

    fn try_from(row: PluginRow) -> Result<Self, StoreError> {
        Ok(PluginRecord {
            kind: PluginKind::parse(&row.kind).ok_or_else(|| corrupt("plugin kind", &row.kind))?,
            name: row.name,
            version: row.version,
            sha256: row.sha256,
            config: row.config,
            priority: row.priority,
            listen: row
                .listen
                .map(|text| text.split(',').map(str::to_owned).collect()),
            limits: PluginLimits {
                max_memory: row.max_memory.map(|b| b.max(0).unsigned_abs()),
                max_input: row.max_input.map(|b| b.max(0).unsigned_abs()),
            },
            size: row.size,
            active: row.active,
            canary_percent: row.canary_percent.and_then(|p| u8::try_from(p).ok()),
            shadow_sample: row
                .shadow_ppm
                .map(|ppm| ppm.clamp(0, i64::from(PPM)) as f64 / f64::from(PPM)),
            created_at: row.created_at,
        })
    }
}
