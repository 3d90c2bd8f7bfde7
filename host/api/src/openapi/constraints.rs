//! What the server enforces, written into the document: patterns,
//! lengths, ranges and the closed sets of values (statuses, currencies,
//! plugin kinds). Every figure comes from the constant the server checks
//! against, so the document cannot drift from the code.

use serde_json::Value;
use utoipa::openapi::path::{Operation, Parameter};
use utoipa::openapi::schema::{Object, OneOf, Schema, Type};
use utoipa::openapi::{Components, RefOr};

use commerce_app::{catalog, feed, inventory, orders, plugins, ports, saga, views, what_if};
use commerce_domain::order::{MAX_LINES, MAX_REASON_LEN};
use commerce_domain::product::{MAX_QUANTITY, MAX_SKU_LEN};
use commerce_domain::{Currency, OrderStatus};

/// A SKU: what `Sku::parse` takes.
pub fn sku_pattern() -> String {
    format!("^[A-Za-z0-9._-]{{1,{MAX_SKU_LEN}}}$")
}

/// A plugin name: what the registry takes.
fn plugin_name_pattern() -> String {
    format!("^[a-z0-9_-]{{1,{}}}$", plugins::MAX_NAME_LEN)
}

/// `Idempotency-Key`: visible ASCII.
fn idempotency_key_pattern() -> String {
    format!("^[!-~]{{1,{}}}$", orders::MAX_IDEMPOTENCY_KEY_LEN)
}

/// Where a saga hook listens: what `parse_listen` takes.
fn listen_pattern() -> String {
    let steps: Vec<&str> = commerce_domain::saga::Step::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let point = format!("({})(:(before|after))?", steps.join("|"));
    format!("^{point}(,{point})*$")
}

/// `If-Match`: an order version, as its ETag (`"3"`, weak or not) or bare.
pub const IF_MATCH_PATTERN: &str = r#"^(W/)?("[0-9]{1,18}"|[0-9]{1,18})$"#;

/// Text that must hold something besides white space.
const NOT_BLANK: &str = r"\S";

/// A decimal amount: digits, and optionally a fraction.
const DECIMAL: &str = r"^[0-9]{1,13}(\.[0-9]{1,4})?$";

/// Puts the constraints into the parameters of one operation.
pub fn parameters(path: &str, operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        constrain_parameter(path, parameter);
    }
}

fn constrain_parameter(path: &str, parameter: &mut Parameter) {
    if parameter.name == "Prefer" {
        let said = parameter.description.get_or_insert_with(String::new);
        said.push_str(". As RFC 7240 asks, a preference the server cannot follow (another token, a wait that is not a number) is ignored; `Preference-Applied: wait=N` on the answer says a wait was honoured.");
        return;
    }
    let schema = match parameter.name.as_str() {
        "sku" => string(Some(sku_pattern()), None, None),
        "name" if path.starts_with("/v1/plugins/") => {
            string(Some(plugin_name_pattern()), None, None)
        }
        "Idempotency-Key" => string(Some(idempotency_key_pattern()), None, None),
        "If-Match" => string(Some(IF_MATCH_PATTERN.to_owned()), None, None),
        "limit" => integer(1, page_limit(path)),
        // `<tx>-<position>`, or empty for the start of the feed.
        "after" => string(Some("^([0-9]{1,18}-[0-9]{1,18})?$".to_owned()), None, None),
        // An order id in unpadded base64url: 22 characters, the last one
        // carrying 2 bits.
        "cursor" if path == "/v1/orders" => {
            string(Some("^[A-Za-z0-9_-]{21}[AQgw]$".to_owned()), None, None)
        }
        "status" if path == "/v1/orders" => {
            enumeration(OrderStatus::ALL.iter().map(|s| s.as_str()))
        }
        "status" if path == "/v1/sagas" => {
            enumeration(ports::SAGA_STATUSES.iter().map(|s| ports::status_str(*s)))
        }
        "kind" => enumeration(["pricing", "validation", "saga-hook"]),
        "outcome" => enumeration(plugins::RUN_OUTCOMES.iter().copied()),
        "reason" => string(None, None, Some(MAX_REASON_LEN)),
        "config" => string(None, None, Some(plugins::MAX_CONFIG_LEN)),
        "listen" => string(Some(listen_pattern()), None, None),
        // The maxima are settings of the running service, not constants.
        "max_memory" => integer(plugins::MIN_MEMORY_LIMIT as i64, i64::MAX),
        "max_input" => integer(plugins::MIN_INPUT_LIMIT as i64, i64::MAX),
        _ => return,
    };
    parameter.schema = Some(RefOr::T(schema));
}

fn page_limit(path: &str) -> i64 {
    match path {
        "/v1/orders" => views::MAX_PAGE.into(),
        "/v1/sagas" => saga::admin::MAX_SAGA_PAGE.into(),
        "/v1/events" => feed::MAX_FEED_LIMIT.into(),
        "/v1/plugins/{name}/runs" => plugins::MAX_RUNS_LISTED.into(),
        _ => i64::from(u32::MAX),
    }
}

/// Puts the constraints into the bodies' schemas.
pub fn bodies(components: &mut Components) {
    let currency = || enumeration(Currency::codes());
    let rules: [(&str, &str, Schema); 20] = [
        (
            "ItemRequest",
            "sku",
            string(Some(sku_pattern()), None, None),
        ),
        ("ItemRequest", "quantity", integer(1, MAX_QUANTITY.into())),
        (
            "RefundLineRequest",
            "sku",
            string(Some(sku_pattern()), None, None),
        ),
        (
            "RefundLineRequest",
            "quantity",
            integer(1, MAX_QUANTITY.into()),
        ),
        ("CreateOrderRequest", "currency", currency()),
        ("PaymentRequest", "token", token()),
        (
            "RefundOrderRequest",
            "reason",
            optional(string(None, None, Some(MAX_REASON_LEN))),
        ),
        (
            "RefundOrderRequest",
            "amount",
            optional(string(Some(DECIMAL.to_owned()), None, None)),
        ),
        (
            "PutProductRequest",
            "name",
            string(
                Some(NOT_BLANK.to_owned()),
                Some(1),
                Some(catalog::MAX_NAME_LEN),
            ),
        ),
        (
            "PutProductRequest",
            "unit_price",
            string(Some(DECIMAL.to_owned()), None, None),
        ),
        ("PutProductRequest", "currency", currency()),
        ("PutProductRequest", "stock", integer(0, catalog::MAX_STOCK)),
        (
            "PutCartItemRequest",
            "quantity",
            integer(0, MAX_QUANTITY.into()),
        ),
        ("AdjustStock", "delta", nonzero(catalog::MAX_STOCK)),
        (
            "AdjustStock",
            "reason",
            reason(inventory::MAX_ADJUST_REASON_LEN),
        ),
        ("ActivateRequest", "version", optional(integer(1, i64::MAX))),
        ("DryRunRequest", "version", optional(integer(1, i64::MAX))),
        ("ShadowRequest", "version", integer(1, i64::MAX)),
        ("ReplayRequest", "version", integer(1, i64::MAX)),
        (
            "ReplayRequest",
            "limit",
            optional(integer(1, what_if::MAX_REPLAY_ORDERS.into())),
        ),
    ];
    for (name, property, schema) in rules {
        set_property(components, name, property, schema);
    }
    for name in ["CreateOrderRequest", "UpdateOrderRequest"] {
        if let Some(Schema::Array(items)) = property_mut(components, name, "items") {
            items.min_items = Some(1);
            items.max_items = Some(MAX_LINES);
        }
    }
}

fn set_property(components: &mut Components, name: &str, property: &str, schema: Schema) {
    let slot = property_slot(components, name, property)
        .unwrap_or_else(|| panic!("the document has no {name}.{property}"));
    // Keep what the annotation says about the field.
    let description = match slot {
        RefOr::T(Schema::Object(o)) => o.description.clone(),
        _ => None,
    };
    *slot = RefOr::T(with_description(schema, description));
}

fn property_slot<'a>(
    components: &'a mut Components,
    name: &str,
    property: &str,
) -> Option<&'a mut RefOr<Schema>> {
    match components.schemas.get_mut(name)? {
        RefOr::T(Schema::Object(object)) => object.properties.get_mut(property),
        _ => None,
    }
}

fn property_mut<'a>(
    components: &'a mut Components,
    name: &str,
    property: &str,
) -> Option<&'a mut Schema> {
    match property_slot(components, name, property)? {
        RefOr::T(schema) => Some(schema),
        RefOr::Ref(_) => None,
    }
}

fn with_description(schema: Schema, description: Option<String>) -> Schema {
    match schema {
        Schema::Object(mut o) => {
            o.description = description.or(o.description);
            Schema::Object(o)
        }
        Schema::OneOf(mut o) => {
            o.description = description.or(o.description);
            Schema::OneOf(o)
        }
        other => other,
    }
}

fn string(pattern: Option<String>, min: Option<usize>, max: Option<usize>) -> Schema {
    let mut o = Object::with_type(Type::String);
    o.pattern = pattern;
    o.min_length = min;
    o.max_length = max;
    Schema::Object(o)
}

/// A reason that must say something.
fn reason(max: usize) -> Schema {
    string(Some(NOT_BLANK.to_owned()), Some(1), Some(max))
}

fn token() -> Schema {
    string(None, Some(1), Some(orders::MAX_PAYMENT_TOKEN_LEN))
}

fn integer(min: i64, max: i64) -> Schema {
    let mut o = Object::with_type(Type::Integer);
    o.format = Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
        utoipa::openapi::schema::KnownFormat::Int64,
    ));
    o.minimum = Some((min as isize).into());
    o.maximum = Some((max as isize).into());
    Schema::Object(o)
}

/// An integer in `-max..=max` other than 0.
fn nonzero(max: i64) -> Schema {
    let mut one_of = OneOf::new();
    one_of.items = vec![RefOr::T(integer(-max, -1)), RefOr::T(integer(1, max))];
    Schema::OneOf(one_of)
}

fn enumeration<'a>(values: impl IntoIterator<Item = &'a str>) -> Schema {
    let mut o = Object::with_type(Type::String);
    o.enum_values = Some(values.into_iter().map(Value::from).collect());
    Schema::Object(o)
}

/// The schema, or `null` (a field that may be left out or sent as null).
fn optional(schema: Schema) -> Schema {
    let mut one_of = OneOf::new();
    one_of.items = vec![
        RefOr::T(Schema::Object(Object::with_type(Type::Null))),
        RefOr::T(schema),
    ];
    Schema::OneOf(one_of)
}
