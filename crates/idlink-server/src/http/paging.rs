//! `page`, `per_page` and `include_totals`, read alike by every listing endpoint.

use std::collections::HashMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::users::{DEFAULT_PER_PAGE, MAX_PER_PAGE};
use crate::error::{Error, Result};

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u64,
    pub per_page: u64,
    pub include_totals: bool,
}

fn number(params: &HashMap<String, String>, key: &str, default: u64) -> Result<u64> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            Error::InvalidQuery(format!(
                "Query validation error: 'Expected type integer but found type string' on property {key}."
            ))
        }),
    }
}

/// A boolean query parameter (`true`/`false`), false when absent.
pub fn boolean(params: &HashMap<String, String>, key: &str) -> Result<bool> {
    match params.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Error::InvalidQuery(format!(
            "Query validation error: 'Expected type boolean but found type string' on property {key}."
        ))),
    }
}

impl Paging {
    /// Reads the paging parameters; `per_page` is at most [`MAX_PER_PAGE`].
    pub fn from_params(params: &HashMap<String, String>) -> Result<Self> {
        let per_page = number(params, "per_page", DEFAULT_PER_PAGE)?;
        if per_page > MAX_PER_PAGE {
            return Err(Error::InvalidQuery(format!(
                "Query validation error: 'Number is greater than the maximum allowed value of {MAX_PER_PAGE}' on property per_page."
            )));
        }
        Ok(Self {
            page: number(params, "page", 0)?,
            per_page,
            include_totals: boolean(params, "include_totals")?,
        })
    }

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        self.page.saturating_mul(self.per_page)
    }

    /// The response of a listing whose envelope has no `length`, as Auth0's connections
    /// listing: the bare array, or `{total, start, limit, <name>: [...]}` (recorded).
    pub fn respond_without_length<T: Serialize>(
        &self,
        name: &str,
        items: Vec<T>,
        total: u64,
    ) -> Response {
        if !self.include_totals {
            return Json(items).into_response();
        }
        let mut envelope = json!({"total": total, "start": self.offset(), "limit": self.per_page});
        envelope[name] = serde_json::to_value(items).unwrap_or(Value::Array(Vec::new()));
        Json(envelope).into_response()
    }

    /// The response: the bare array, or with `include_totals` Auth0's envelope
    /// `{start, limit, length, total, <name>: [...]}`.
    pub fn respond<T: Serialize>(&self, name: &str, items: Vec<T>, total: u64) -> Response {
        if !self.include_totals {
            return Json(items).into_response();
        }
        let length = items.len() as u64;
        let mut envelope = json!({
            "start": self.offset(),
            "limit": self.per_page,
            "length": length,
            "total": total,
        });
        envelope[name] = serde_json::to_value(items).unwrap_or(Value::Array(Vec::new()));
        Json(envelope).into_response()
    }
}
