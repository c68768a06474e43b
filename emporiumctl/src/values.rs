//! Field values in their command-line form, both ways: text a user types parsed into a
//! `prost_reflect::Value` for a field of any kind, and a value shown in a table cell. The shapes
//! the contract uses get a human form: enums by their value name without the enum's prefix
//! (`confidential` for `CLIENT_TYPE_CONFIDENTIAL`), `google.protobuf.Timestamp` in RFC 3339, and
//! any message shaped like money (`int64 amount_minor` + `string currency`) as `12.99EUR`,
//! converted with integer arithmetic and the currency's ISO 4217 minor-unit digits.

use std::str::FromStr;

use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value,
};

/// Full name of the well-known timestamp message.
pub(crate) const TIMESTAMP: &str = "google.protobuf.Timestamp";

/// How a field's text is parsed: by its protobuf kind, or by one of the human shapes.
#[derive(Clone, Debug)]
pub(crate) enum ValueKind {
    /// A scalar of this protobuf kind (string, bool, numbers, bytes as UTF-8 text).
    Scalar(Kind),
    /// One of the enum's values, by its short name.
    Enum(EnumDescriptor),
    /// An RFC 3339 time, into a `google.protobuf.Timestamp` of this descriptor.
    Timestamp(MessageDescriptor),
    /// `12.99EUR` into a money-shaped message.
    Money(MessageDescriptor),
}

// === impl ValueKind ===

impl ValueKind {
    /// The kind of the values `field` holds (its elements, for a repeated field); `None` for a
    /// message that has no human form.
    pub(crate) fn of_field(field: &FieldDescriptor) -> Option<ValueKind> {
        match field.kind() {
            Kind::Enum(enumeration) => Some(ValueKind::Enum(enumeration)),
            Kind::Message(message) if message.full_name() == TIMESTAMP => {
                Some(ValueKind::Timestamp(message))
            }
            Kind::Message(message) if is_money(&message) => Some(ValueKind::Money(message)),
            Kind::Message(_) => None,
            scalar => Some(ValueKind::Scalar(scalar)),
        }
    }

    /// Parses `text` as a value of this kind, or says why it is not one.
    pub(crate) fn parse(&self, text: &str) -> Result<Value, String> {
        match self {
            ValueKind::Scalar(kind) => parse_scalar(kind, text),
            ValueKind::Enum(enumeration) => enum_number(enumeration, text)
                .map(Value::EnumNumber)
                .ok_or_else(|| format!("expected one of {}", enum_choices(enumeration).join(", "))),
            ValueKind::Timestamp(message) => parse_timestamp(message, text),
            ValueKind::Money(message) => parse_money(message, text),
        }
    }

    /// What to put in the help text about the accepted form, if anything beyond the kind.
    pub(crate) fn form_hint(&self) -> Option<&'static str> {
        match self {
            ValueKind::Timestamp(_) => Some("RFC 3339, e.g. 2025-01-31T09:30:00Z"),
            ValueKind::Money(_) => Some("amount and ISO 4217 currency, e.g. 12.99EUR"),
            ValueKind::Scalar(Kind::Bool) => Some("true or false; alone, true"),
            ValueKind::Scalar(_) | ValueKind::Enum(_) => None,
        }
    }

    /// The placeholder shown in the usage line.
    pub(crate) fn value_name(&self) -> &'static str {
        match self {
            ValueKind::Scalar(
                Kind::Int32
                | Kind::Int64
                | Kind::Sint32
                | Kind::Sint64
                | Kind::Sfixed32
                | Kind::Sfixed64
                | Kind::Uint32
                | Kind::Uint64
                | Kind::Fixed32
                | Kind::Fixed64,
            ) => "N",
            ValueKind::Scalar(Kind::Float | Kind::Double) => "NUMBER",
            ValueKind::Timestamp(_) => "TIME",
            ValueKind::Scalar(Kind::Bool) => "BOOL",
            ValueKind::Money(_) => "AMOUNT",
            ValueKind::Scalar(_) | ValueKind::Enum(_) => "TEXT",
        }
    }

    /// Whether the value is a number (right-aligned in tables, negative values allowed).
    pub(crate) fn is_numeric(&self) -> bool {
        matches!(self.value_name(), "N" | "NUMBER" | "AMOUNT")
    }
}

/// Whether `message` is shaped like money: exactly an integer `amount_minor` and a string
/// `currency`.
pub(crate) fn is_money(message: &MessageDescriptor) -> bool {
    let amount = message.get_field_by_name("amount_minor");
    let currency = message.get_field_by_name("currency");
    message.fields().len() == 2
        && amount.is_some_and(|field| matches!(field.kind(), Kind::Int64 | Kind::Int32))
        && currency.is_some_and(|field| matches!(field.kind(), Kind::String))
}

/// The names a user types for `enumeration`'s values: lower case, `-` for `_`, without the
/// prefix every value shares (the enum's name in SCREAMING_SNAKE_CASE); the unspecified zero
/// value is left out, since it means "not set".
pub(crate) fn enum_choices(enumeration: &EnumDescriptor) -> Vec<String> {
    enumeration
        .values()
        .filter(|value| !(value.number() == 0 && value.name().ends_with("_UNSPECIFIED")))
        .map(|value| short_enum_name(enumeration, value.name()))
        .collect()
}

/// `confidential` for `CLIENT_TYPE_CONFIDENTIAL` of `ClientType`.
pub(crate) fn short_enum_name(enumeration: &EnumDescriptor, value_name: &str) -> String {
    let prefix = contract::resources::enum_value_prefix(enumeration);
    value_name
        .strip_prefix(&prefix)
        .unwrap_or(value_name)
        .to_lowercase()
        .replace('_', "-")
}

/// Text for a table cell: enums by short name, times to the second, money in major units,
/// lists joined with `, `, other messages as compact JSON.
pub(crate) fn display(field: &FieldDescriptor, value: &Value) -> String {
    match value {
        Value::List(items) => items
            .iter()
            .map(|item| display_one(&field.kind(), item))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Map(entries) => {
            let mut texts: Vec<String> = entries
                .iter()
                .map(|(key, value)| format!("{}={}", map_key_text(key), scalar_text(value)))
                .collect();
            texts.sort();
            texts.join(", ")
        }
        single => display_one(&field.kind(), single),
    }
}

/// `12.99 EUR`: the amount in major units, with as many decimals as the currency has.
pub(crate) fn money_text(amount_minor: i64, currency: &str) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let amount = amount_minor.unsigned_abs();
    let decimals = minor_unit_digits(currency);
    if decimals == 0 {
        return format!("{sign}{amount} {currency}");
    }
    let per_major = 10_u64.pow(decimals);
    let width = decimals as usize;
    format!(
        "{sign}{}.{:0width$} {currency}",
        amount / per_major,
        amount % per_major
    )
}

/// RFC 3339 to the second (`2025-01-31T09:30:00Z`): tables have no room for nanoseconds.
pub(crate) fn timestamp_text(message: &DynamicMessage) -> String {
    let seconds = message
        .get_field_by_name("seconds")
        .and_then(|value| value.as_i64())
        .unwrap_or(0);
    prost_types::Timestamp { seconds, nanos: 0 }.to_string()
}

// === helpers ===

fn display_one(kind: &Kind, value: &Value) -> String {
    match (kind, value) {
        (Kind::Enum(enumeration), Value::EnumNumber(number)) => {
            enumeration.get_value(*number).map_or_else(
                || number.to_string(),
                |value| short_enum_name(enumeration, value.name()),
            )
        }
        (Kind::Message(descriptor), Value::Message(message)) => {
            if descriptor.full_name() == TIMESTAMP {
                timestamp_text(message)
            } else if is_money(descriptor) {
                let amount = message
                    .get_field_by_name("amount_minor")
                    .and_then(|value| value.as_i64().or(value.as_i32().map(i64::from)))
                    .unwrap_or(0);
                let currency = message
                    .get_field_by_name("currency")
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default();
                money_text(amount, &currency)
            } else {
                crate::render::compact_json(message)
            }
        }
        (_, value) => scalar_text(value),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Bool(value) => value.to_string(),
        Value::I32(value) => value.to_string(),
        Value::I64(value) => value.to_string(),
        Value::U32(value) => value.to_string(),
        Value::U64(value) => value.to_string(),
        Value::F32(value) => value.to_string(),
        Value::F64(value) => value.to_string(),
        Value::String(value) => value.clone(),
        Value::Bytes(value) => String::from_utf8_lossy(value).into_owned(),
        Value::EnumNumber(value) => value.to_string(),
        Value::Message(message) => crate::render::compact_json(message),
        Value::List(_) | Value::Map(_) => String::new(),
    }
}

fn map_key_text(key: &MapKey) -> String {
    match key {
        MapKey::Bool(value) => value.to_string(),
        MapKey::I32(value) => value.to_string(),
        MapKey::I64(value) => value.to_string(),
        MapKey::U32(value) => value.to_string(),
        MapKey::U64(value) => value.to_string(),
        MapKey::String(value) => value.clone(),
    }
}

fn parse_scalar(kind: &Kind, text: &str) -> Result<Value, String> {
    fn number<T: FromStr>(text: &str, what: &str) -> Result<T, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("expected {what}, got {text:?}"))
    }
    match kind {
        Kind::String => Ok(Value::String(text.to_owned())),
        Kind::Bytes => Ok(Value::Bytes(text.as_bytes().to_vec().into())),
        Kind::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {text:?}")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            number(text, "a 32-bit integer").map(Value::I32)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => number(text, "an integer").map(Value::I64),
        Kind::Uint32 | Kind::Fixed32 => {
            number(text, "a non-negative 32-bit integer").map(Value::U32)
        }
        Kind::Uint64 | Kind::Fixed64 => number(text, "a non-negative integer").map(Value::U64),
        Kind::Float => number(text, "a number").map(Value::F32),
        Kind::Double => number(text, "a number").map(Value::F64),
        Kind::Message(message) => Err(format!("{} takes no text form", message.full_name())),
        Kind::Enum(enumeration) => enum_number(enumeration, text)
            .map(Value::EnumNumber)
            .ok_or_else(|| format!("expected one of {}", enum_choices(enumeration).join(", "))),
    }
}

/// The number of the value named `text` (short form, or the full value name).
fn enum_number(enumeration: &EnumDescriptor, text: &str) -> Option<i32> {
    enumeration
        .values()
        .find(|value| value.name() == text || short_enum_name(enumeration, value.name()) == text)
        .map(|value| value.number())
}

fn parse_timestamp(message: &MessageDescriptor, text: &str) -> Result<Value, String> {
    let timestamp = prost_types::Timestamp::from_str(text.trim()).map_err(|_| {
        format!("expected an RFC 3339 time such as 2025-01-31T09:30:00Z, got {text:?}")
    })?;
    let mut dynamic = DynamicMessage::new(message.clone());
    dynamic
        .try_set_field_by_name("seconds", Value::I64(timestamp.seconds))
        .map_err(|error| error.to_string())?;
    dynamic
        .try_set_field_by_name("nanos", Value::I32(timestamp.nanos))
        .map_err(|error| error.to_string())?;
    Ok(Value::Message(dynamic))
}

/// `12.99EUR`, `12.99 EUR`, `-1.50USD`, `1299JPY`: the amount in major units with at most the
/// currency's decimals, then the code. The code is passed on as typed: the server says whether
/// it is a currency.
fn parse_money(message: &MessageDescriptor, text: &str) -> Result<Value, String> {
    let text = text.trim();
    let split = text
        .find(|character: char| character.is_alphabetic())
        .ok_or_else(|| {
            format!("expected an amount and a currency such as 12.99EUR, got {text:?}")
        })?;
    let (amount, currency) = text.split_at(split);
    let (amount, currency) = (amount.trim(), currency.trim());
    let amount_minor = minor_units(amount, minor_unit_digits(currency))
        .map_err(|reason| format!("{reason} in {text:?}"))?;
    let mut dynamic = DynamicMessage::new(message.clone());
    let amount_field = message
        .get_field_by_name("amount_minor")
        .ok_or("a money message has amount_minor")?;
    let amount_value = match amount_field.kind() {
        Kind::Int32 => {
            Value::I32(i32::try_from(amount_minor).map_err(|_| format!("{amount} is too large"))?)
        }
        _ => Value::I64(amount_minor),
    };
    dynamic
        .try_set_field(&amount_field, amount_value)
        .map_err(|error| error.to_string())?;
    dynamic
        .try_set_field_by_name("currency", Value::String(currency.to_owned()))
        .map_err(|error| error.to_string())?;
    Ok(Value::Message(dynamic))
}

/// `12.99` with 2 decimals is 1299; more decimals than the currency has is an error.
fn minor_units(amount: &str, decimals: u32) -> Result<i64, String> {
    let (negative, digits) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |part: &str| part.chars().all(|character| character.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(format!("{amount:?} is not an amount"));
    }
    if fraction.len() > decimals as usize {
        return Err(format!(
            "{amount} has more decimals than the currency's {decimals}"
        ));
    }
    let too_large = || format!("{amount} is too large");
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let padded = format!("{fraction:0<width$}", width = decimals as usize);
    let fraction: i64 = if padded.is_empty() {
        0
    } else {
        padded.parse().map_err(|_| too_large())?
    };
    let minor = whole
        .checked_mul(10_i64.pow(decimals))
        .and_then(|whole| whole.checked_add(fraction))
        .ok_or_else(too_large)?;
    Ok(if negative { -minor } else { minor })
}

/// ISO 4217 minor-unit digits from the `iso_currency` list; 2 for a code it does not know or one
/// without minor units (`XAU`), so the amount still reads sensibly.
fn minor_unit_digits(currency: &str) -> u32 {
    iso_currency::Currency::from_code(currency)
        .and_then(iso_currency::Currency::exponent)
        .map_or(2, u32::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> prost_reflect::DescriptorPool {
        contract::decode_pool(emporium_proto::FILE_DESCRIPTOR_SET).expect("the contract decodes")
    }

    fn field(message: &str, field: &str) -> FieldDescriptor {
        pool()
            .get_message_by_name(message)
            .and_then(|message| message.get_field_by_name(field))
            .expect("the field exists")
    }

    fn kind(message: &str, name: &str) -> ValueKind {
        ValueKind::of_field(&field(message, name)).expect("a field with a text form")
    }

    #[test]
    fn money_is_parsed_in_major_units_with_the_currency_s_decimals() {
        let price = kind("emporium.catalog.v1.CreateProductRequest", "price");
        let minor = |text: &str| -> Result<(i64, String), String> {
            let Value::Message(money) = price.parse(text)? else {
                panic!("money is a message");
            };
            Ok((
                money
                    .get_field_by_name("amount_minor")
                    .unwrap()
                    .as_i64()
                    .unwrap(),
                money
                    .get_field_by_name("currency")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ))
        };

        assert!(matches!(price, ValueKind::Money(_)));
        assert_eq!(minor("12.99EUR"), Ok((1299, "EUR".to_owned())));
        assert_eq!(minor("12.99 EUR"), Ok((1299, "EUR".to_owned())));
        assert_eq!(minor("12EUR"), Ok((1200, "EUR".to_owned())));
        assert_eq!(minor("0.5EUR"), Ok((50, "EUR".to_owned())));
        assert_eq!(minor("-1.50USD"), Ok((-150, "USD".to_owned())));
        assert_eq!(minor("1299JPY"), Ok((1299, "JPY".to_owned())));
        assert_eq!(minor("1.299KWD"), Ok((1299, "KWD".to_owned())));
        assert!(minor("12.999EUR").is_err(), "EUR has 2 decimals");
        assert!(minor("12.5JPY").is_err(), "JPY has none");
        assert!(minor("EUR").is_err());
        assert!(minor("12,99EUR").is_err());
        assert!(minor("99999999999999999999EUR").is_err());
    }

    #[test]
    fn money_is_shown_in_major_units_with_the_currency_s_decimals() {
        assert_eq!(money_text(1299, "EUR"), "12.99 EUR");
        assert_eq!(money_text(5, "EUR"), "0.05 EUR");
        assert_eq!(money_text(-150, "USD"), "-1.50 USD");
        assert_eq!(money_text(1299, "JPY"), "1299 JPY");
        assert_eq!(money_text(12345, "CLF"), "1.2345 CLF");
        assert_eq!(money_text(1299, "QQQ"), "12.99 QQQ");
        assert_eq!(money_text(i64::MIN, "EUR"), "-92233720368547758.08 EUR");
    }

    #[test]
    fn enums_are_typed_and_shown_without_their_prefix() {
        let client_type = kind("emporium.identity.v1.CreateClientRequest", "type");
        let order_by = kind("emporium.catalog.v1.ListProductsRequest", "order_by");
        let ValueKind::Enum(order_by_enum) = &order_by else {
            panic!("order_by is an enum");
        };

        assert_eq!(
            client_type
                .parse("confidential")
                .map(|value| value.as_enum_number()),
            Ok(Some(2))
        );
        assert_eq!(
            client_type
                .parse("CLIENT_TYPE_PUBLIC")
                .map(|value| value.as_enum_number()),
            Ok(Some(1))
        );
        assert!(client_type.parse("unspecified-ish").is_err());
        assert_eq!(
            enum_choices(order_by_enum),
            ["name", "sku", "price", "create-time", "update-time"]
        );
        assert_eq!(
            display(
                &field("emporium.identity.v1.Client", "type"),
                &Value::EnumNumber(2)
            ),
            "confidential"
        );
    }

    #[test]
    fn scalars_and_times_are_parsed_by_their_kind() {
        let version = kind(
            "emporium.catalog.v1.UpdateProductRequest",
            "expected_version",
        );
        let disabled = kind("emporium.identity.v1.UpdateAccountRequest", "disabled");
        let time_field = field("emporium.catalog.v1.Product", "update_time");
        let time = ValueKind::of_field(&time_field).expect("a timestamp has a text form");

        assert_eq!(version.parse("-3"), Ok(Value::I64(-3)));
        assert!(version.parse("three").is_err());
        assert_eq!(disabled.parse("false"), Ok(Value::Bool(false)));
        assert!(disabled.parse("no").is_err());
        let parsed = time
            .parse("2025-01-31T09:30:00.5Z")
            .expect("an RFC 3339 time");
        assert_eq!(display(&time_field, &parsed), "2025-01-31T09:30:00Z");
        assert!(time.parse("31/01/2025").is_err());
    }
}
