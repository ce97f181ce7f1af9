//! `fields` and `include_fields`, read alike by the endpoints that take them (Auth0:
//! `fields` is a comma-separated list of top-level keys; `include_fields=true`, the
//! default, keeps only those, `false` drops them).

use std::collections::HashMap;

use serde_json::Value;

use super::paging::boolean;
use crate::error::Result;

/// Which top-level keys an answer keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSelection {
    fields: Vec<String>,
    include: bool,
}

impl FieldSelection {
    /// Reads `fields`/`include_fields`; `None` when no field is named (the whole item).
    pub fn from_params(params: &HashMap<String, String>) -> Result<Option<Self>> {
        let include = match params.get("include_fields") {
            None => true,
            Some(_) => boolean(params, "include_fields")?,
        };
        let fields: Vec<String> = params
            .get("fields")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok((!fields.is_empty()).then_some(Self { fields, include }))
    }

    /// The item with only the selected keys (objects only; anything else as it is).
    pub fn apply(&self, mut item: Value) -> Value {
        if let Value::Object(map) = &mut item {
            map.retain(|key, _| self.fields.iter().any(|f| f == key) == self.include);
        }
        item
    }
}

/// Applies an optional selection to every item.
pub fn select_all(selection: Option<&FieldSelection>, items: Vec<Value>) -> Vec<Value> {
    match selection {
        None => items,
        Some(selection) => items
            .into_iter()
            .map(|item| selection.apply(item))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn include_and_exclude() {
        let item = json!({"a": 1, "b": 2, "c": 3});
        let keep = FieldSelection::from_params(&params(&[("fields", "a, c")]))
            .unwrap()
            .unwrap();
        assert_eq!(keep.apply(item.clone()), json!({"a": 1, "c": 3}));
        let drop =
            FieldSelection::from_params(&params(&[("fields", "a"), ("include_fields", "false")]))
                .unwrap()
                .unwrap();
        assert_eq!(drop.apply(item), json!({"b": 2, "c": 3}));
        assert!(
            FieldSelection::from_params(&params(&[("include_fields", "true")]))
                .unwrap()
                .is_none()
        );
        assert!(
            FieldSelection::from_params(&params(&[("fields", "a"), ("include_fields", "yes")]))
                .is_err()
        );
    }
}
