//! How results look: aligned tables for people, JSON documents for scripts. JSON values are
//! built by hand from the generated types (which do not derive `Serialize`) so the field names
//! are chosen here, once. Money is formatted with integer arithmetic only.

use std::io::Write;

use emporium_proto::audit::v1 as audit;
use emporium_proto::catalog::v1 as proto;
use serde_json::{Value, json};

use crate::OutputFormat;
use crate::error::CliError;
use crate::table::{Align, Fields, Table};

/// One or more pages of a list, as the user asked for them.
#[derive(Debug)]
pub(crate) struct Listing<T> {
    pub(crate) items: Vec<T>,
    /// Items matching the filter across all pages.
    pub(crate) total_size: i64,
    /// Token of the first page not fetched; empty when the listing is complete.
    pub(crate) next_page_token: String,
}

impl<T> Default for Listing<T> {
    fn default() -> Listing<T> {
        Listing {
            items: Vec::new(),
            total_size: 0,
            next_page_token: String::new(),
        }
    }
}

pub(crate) fn category(
    output: OutputFormat,
    category: &proto::Category,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => write_json(out, &category_json(category)),
        OutputFormat::Table => {
            let mut fields = Fields::default();
            fields.push("id", category.id.as_str());
            fields.push("name", category.name.as_str());
            fields.push("description", category.description.as_str());
            fields.push("version", category.version.to_string());
            fields.push("created", timestamp_text(category.create_time.as_ref()));
            fields.push("updated", timestamp_text(category.update_time.as_ref()));
            Ok(fields.write(out)?)
        }
    }
}

pub(crate) fn product(
    output: OutputFormat,
    product: &proto::Product,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => write_json(out, &product_json(product)),
        OutputFormat::Table => {
            let mut fields = Fields::default();
            fields.push("id", product.id.as_str());
            fields.push("sku", product.sku.as_str());
            fields.push("name", product.name.as_str());
            fields.push("description", product.description.as_str());
            fields.push("category", product.category_id.as_str());
            fields.push("price", money_text(product.price.as_ref()));
            fields.push("stock", product.stock_on_hand.to_string());
            fields.push("version", product.version.to_string());
            fields.push("created", timestamp_text(product.create_time.as_ref()));
            fields.push("updated", timestamp_text(product.update_time.as_ref()));
            Ok(fields.write(out)?)
        }
    }
}

pub(crate) fn categories(
    output: OutputFormat,
    listing: &Listing<proto::Category>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => write_json(
            out,
            &json!({
                "categories": listing.items.iter().map(category_json).collect::<Vec<_>>(),
                "total_size": listing.total_size,
                "next_page_token": listing.next_page_token,
            }),
        ),
        OutputFormat::Table => {
            let mut table = Table::new(&[
                ("ID", Align::Left),
                ("NAME", Align::Left),
                ("VERSION", Align::Right),
                ("UPDATED", Align::Left),
            ]);
            for category in &listing.items {
                table.push(vec![
                    category.id.clone(),
                    category.name.clone(),
                    category.version.to_string(),
                    timestamp_text(category.update_time.as_ref()),
                ]);
            }
            write_listing(out, &table, listing, ("category", "categories"))
        }
    }
}

pub(crate) fn products(
    output: OutputFormat,
    listing: &Listing<proto::Product>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => write_json(
            out,
            &json!({
                "products": listing.items.iter().map(product_json).collect::<Vec<_>>(),
                "total_size": listing.total_size,
                "next_page_token": listing.next_page_token,
            }),
        ),
        OutputFormat::Table => {
            let mut table = Table::new(&[
                ("ID", Align::Left),
                ("SKU", Align::Left),
                ("NAME", Align::Left),
                ("PRICE", Align::Right),
                ("STOCK", Align::Right),
                ("VERSION", Align::Right),
            ]);
            for product in &listing.items {
                table.push(vec![
                    product.id.clone(),
                    product.sku.clone(),
                    product.name.clone(),
                    money_text(product.price.as_ref()),
                    product.stock_on_hand.to_string(),
                    product.version.to_string(),
                ]);
            }
            write_listing(out, &table, listing, ("product", "products"))
        }
    }
}

pub(crate) fn events(
    output: OutputFormat,
    events: &[audit::Event],
    out: &mut impl Write,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => write_json(
            out,
            &json!({ "events": events.iter().map(event_json).collect::<Vec<_>>() }),
        ),
        OutputFormat::Table => {
            let mut table = Table::new(&[
                ("VERSION", Align::Right),
                ("TIME", Align::Left),
                ("TYPE", Align::Left),
                ("PUBLISHED", Align::Left),
                ("ACTOR", Align::Left),
            ]);
            for event in events {
                table.push(vec![
                    event.aggregate_version.to_string(),
                    timestamp_text(event.time.as_ref()),
                    event.r#type.clone(),
                    event
                        .publish_time
                        .as_ref()
                        .map_or_else(|| "pending".to_owned(), |time| timestamp_text(Some(time))),
                    event.actor.clone(),
                ]);
            }
            if !table.is_empty() {
                table.write(out)?;
            }
            let noun = if events.len() == 1 { "event" } else { "events" };
            writeln!(out, "{} {noun}", events.len())?;
            Ok(())
        }
    }
}

pub(crate) fn deleted(
    output: OutputFormat,
    resource: &str,
    id: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => write_json(out, &json!({ "id": id, "deleted": true })),
        OutputFormat::Table => Ok(writeln!(out, "deleted {resource} {id}")?),
    }
}

/// `12.99 EUR`: the amount in major units, with as many decimals as the currency has.
pub(crate) fn money_text(money: Option<&proto::Money>) -> String {
    let Some(money) = money else {
        return "-".to_owned();
    };
    let sign = if money.amount_minor < 0 { "-" } else { "" };
    let amount = money.amount_minor.unsigned_abs();
    let decimals = minor_unit_digits(&money.currency);
    if decimals == 0 {
        return format!("{sign}{amount} {}", money.currency);
    }
    let per_major = 10_u64.pow(decimals);
    let width = decimals as usize;
    format!(
        "{sign}{}.{:0width$} {}",
        amount / per_major,
        amount % per_major,
        money.currency
    )
}

// === helpers ===

fn write_listing<T>(
    out: &mut impl Write,
    table: &Table,
    listing: &Listing<T>,
    (singular, plural): (&str, &str),
) -> Result<(), CliError> {
    if !table.is_empty() {
        table.write(out)?;
    }
    let noun = if listing.total_size == 1 {
        singular
    } else {
        plural
    };
    writeln!(
        out,
        "{} of {} {noun}",
        listing.items.len(),
        listing.total_size
    )?;
    if !listing.next_page_token.is_empty() {
        writeln!(out, "next page: --page-token {}", listing.next_page_token)?;
    }
    Ok(())
}

fn write_json(out: &mut impl Write, value: &Value) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(|error| CliError::Output(error.into()))?;
    writeln!(out)?;
    Ok(())
}

fn category_json(category: &proto::Category) -> Value {
    json!({
        "id": category.id,
        "name": category.name,
        "description": category.description,
        "version": category.version,
        "create_time": timestamp_json(category.create_time.as_ref()),
        "update_time": timestamp_json(category.update_time.as_ref()),
    })
}

fn product_json(product: &proto::Product) -> Value {
    json!({
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "category_id": product.category_id,
        "price": product.price.as_ref().map(|price| json!({
            "amount_minor": price.amount_minor,
            "currency": price.currency,
        })),
        "stock_on_hand": product.stock_on_hand,
        "version": product.version,
        "create_time": timestamp_json(product.create_time.as_ref()),
        "update_time": timestamp_json(product.update_time.as_ref()),
    })
}

fn event_json(event: &audit::Event) -> Value {
    // The payload is JSON text: embed it as JSON, or as the text when it is not valid JSON.
    let data = serde_json::from_str::<Value>(&event.data_json)
        .unwrap_or_else(|_| Value::String(event.data_json.clone()));
    json!({
        "id": event.id,
        "type": event.r#type,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "time": timestamp_json(event.time.as_ref()),
        "publish_time": timestamp_json(event.publish_time.as_ref()),
        "actor": event.actor,
        "traceparent": event.traceparent,
        "data": data,
    })
}

/// RFC 3339 with the server's full precision, or `null`.
fn timestamp_json(timestamp: Option<&prost_types::Timestamp>) -> Value {
    timestamp.map_or(Value::Null, |timestamp| {
        Value::String(timestamp.to_string())
    })
}

/// RFC 3339 to the second (`2025-01-31T09:30:00Z`), or `-`: tables have no room for nanoseconds.
fn timestamp_text(timestamp: Option<&prost_types::Timestamp>) -> String {
    match timestamp {
        Some(timestamp) => prost_types::Timestamp {
            seconds: timestamp.seconds,
            nanos: 0,
        }
        .to_string(),
        None => "-".to_owned(),
    }
}

/// ISO 4217 minor-unit digits from the `iso_currency` list; 2 for a code it does not know or one
/// without minor units (`XAU`), so the table still shows something sensible.
fn minor_unit_digits(currency: &str) -> u32 {
    iso_currency::Currency::from_code(currency)
        .and_then(iso_currency::Currency::exponent)
        .map_or(2, u32::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount_minor: i64, currency: &str) -> proto::Money {
        proto::Money {
            amount_minor,
            currency: currency.to_owned(),
        }
    }

    #[test]
    fn money_is_shown_in_major_units_with_the_currency_s_decimals() {
        assert_eq!(money_text(Some(&money(1299, "EUR"))), "12.99 EUR");
        assert_eq!(money_text(Some(&money(5, "EUR"))), "0.05 EUR");
        assert_eq!(money_text(Some(&money(-150, "USD"))), "-1.50 USD");
        assert_eq!(money_text(Some(&money(1299, "JPY"))), "1299 JPY");
        assert_eq!(money_text(Some(&money(1299, "KWD"))), "1.299 KWD");
        assert_eq!(money_text(Some(&money(12345, "CLF"))), "1.2345 CLF");
        assert_eq!(money_text(Some(&money(1299, "QQQ"))), "12.99 QQQ");
        assert_eq!(
            money_text(Some(&money(i64::MIN, "EUR"))),
            "-92233720368547758.08 EUR"
        );
        assert_eq!(money_text(None), "-");
    }

    #[test]
    fn table_timestamps_are_rfc_3339_to_the_second() {
        let timestamp = prost_types::Timestamp {
            seconds: 1_738_315_800,
            nanos: 123_456_789,
        };
        assert_eq!(timestamp_text(Some(&timestamp)), "2025-01-31T09:30:00Z");
        assert_eq!(
            timestamp_json(Some(&timestamp)),
            json!("2025-01-31T09:30:00.123456789Z")
        );
    }
}
