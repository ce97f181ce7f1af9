//! How results are printed: tables for people, JSON for scripts.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use idlink_client::{LogEvent, User, UserIdentity};
use serde::Serialize;

use super::CliError;

/// The output flags every management command takes.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct OutputArgs {
    /// Print JSON: one document (a list is one array).
    #[arg(long, global = true, conflicts_with = "ndjson")]
    pub json: bool,
    /// Print NDJSON: one compact JSON document per line (one per item of a list).
    #[arg(long, global = true)]
    pub ndjson: bool,
}

/// What can be shown as a table: a header and one row per item.
pub trait Tabular {
    /// The column names.
    fn header() -> &'static [&'static str];
    /// This item's cells, in header order.
    fn row(&self) -> Vec<String>;
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

impl Tabular for User {
    fn header() -> &'static [&'static str] {
        &[
            "user_id",
            "email",
            "verified",
            "name",
            "identities",
            "created_at",
        ]
    }
    fn row(&self) -> Vec<String> {
        let identities: Vec<String> = self
            .identities
            .iter()
            .map(|i| format!("{}|{}", i.provider, i.user_id.as_string()))
            .collect();
        vec![
            self.user_id.clone(),
            text(&self.email),
            self.email_verified
                .map(|v| v.to_string())
                .unwrap_or_default(),
            text(&self.name),
            identities.join(" "),
            text(&self.created_at),
        ]
    }
}

impl Tabular for UserIdentity {
    fn header() -> &'static [&'static str] {
        &["provider", "user_id", "connection", "social"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.provider.clone(),
            self.user_id.as_string(),
            self.connection.clone(),
            self.is_social.map(|v| v.to_string()).unwrap_or_default(),
        ]
    }
}

impl Tabular for LogEvent {
    fn header() -> &'static [&'static str] {
        &["date", "type", "description", "user_id", "client_id"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            text(&self.date),
            text(&self.event_type),
            text(&self.description),
            text(&self.user_id),
            text(&self.client_id),
        ]
    }
}

fn json_line(value: &impl Serialize, pretty: bool) -> Result<String, CliError> {
    let encoded = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    encoded.map_err(|e| CliError::Usage(format!("cannot encode the result as JSON: {e}")))
}

impl OutputArgs {
    /// Prints a list: a table, one JSON array, or one NDJSON line per item.
    pub fn list<T: Tabular + Serialize>(&self, items: &[T]) -> Result<(), CliError> {
        if self.ndjson {
            for item in items {
                println!("{}", json_line(item, false)?);
            }
        } else if self.json {
            println!("{}", json_line(&items, true)?);
        } else {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_header(T::header());
            for item in items {
                table.add_row(item.row());
            }
            println!("{table}");
        }
        Ok(())
    }

    /// Prints one item: a one-row table, or one JSON document.
    pub fn one<T: Tabular + Serialize>(&self, item: &T) -> Result<(), CliError> {
        if self.json || self.ndjson {
            println!("{}", json_line(item, self.json)?);
            Ok(())
        } else {
            self.list(std::slice::from_ref(item))
        }
    }

    /// Prints a line for people; nothing in JSON modes (scripts read the exit code).
    pub fn note(&self, message: &str) {
        if !self.json && !self.ndjson {
            println!("{message}");
        }
    }
}
