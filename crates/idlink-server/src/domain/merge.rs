//! Merging the secondary's metadata into the primary's at link time — an idlink
//! extension, off by default. Auth0 keeps the primary's `user_metadata` and
//! `app_metadata` untouched and drops the secondary's ([`MergePolicy::None`]).
//!
//! The rule, applied to `user_metadata` and `app_metadata` separately: objects merge key
//! by key, recursively; anything else (strings, numbers, booleans, `null`, **arrays**) is
//! a leaf, replaced whole. When both sides hold a key and at least one of the two values
//! is not an object, the policy's winner keeps its value and the loser's value is
//! *discarded* (reported, at the same path, by the link preview).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Whose metadata wins when a link merges two users' metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergePolicy {
    /// As Auth0: the primary keeps its metadata, the secondary's is discarded.
    #[default]
    None,
    /// Keys only the secondary has are added; on a conflict the primary's value stays.
    PrimaryWins,
    /// Keys only the secondary has are added; on a conflict the secondary's value wins.
    SecondaryWins,
}

impl MergePolicy {
    /// The policy a per-request override names (`none`, `primary-wins`, `secondary-wins`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "primary-wins" => Some(Self::PrimaryWins),
            "secondary-wins" => Some(Self::SecondaryWins),
            _ => None,
        }
    }
}

/// One metadata object after a merge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    /// What the primary holds after the link.
    pub kept: Map<String, Value>,
    /// The values that lost, at their paths (empty when nothing was lost).
    pub discarded: Map<String, Value>,
}

/// Merges `secondary` into `primary` under `policy`.
pub fn merge(
    primary: &Map<String, Value>,
    secondary: &Map<String, Value>,
    policy: MergePolicy,
) -> Merged {
    match policy {
        MergePolicy::None => Merged {
            kept: primary.clone(),
            discarded: secondary.clone(),
        },
        MergePolicy::PrimaryWins | MergePolicy::SecondaryWins => {
            let mut kept = primary.clone();
            let mut discarded = Map::new();
            let secondary_wins = policy == MergePolicy::SecondaryWins;
            merge_into(&mut kept, secondary, secondary_wins, &mut discarded);
            Merged { kept, discarded }
        }
    }
}

/// Adds `incoming` to `target`; on a leaf conflict `incoming` wins when `incoming_wins`.
/// The losing values go to `discarded` at their paths.
fn merge_into(
    target: &mut Map<String, Value>,
    incoming: &Map<String, Value>,
    incoming_wins: bool,
    discarded: &mut Map<String, Value>,
) {
    for (key, value) in incoming {
        match (target.get_mut(key), value) {
            (None, _) => {
                target.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(ours)), Value::Object(theirs)) => {
                let mut lost = Map::new();
                merge_into(ours, theirs, incoming_wins, &mut lost);
                if !lost.is_empty() {
                    discarded.insert(key.clone(), Value::Object(lost));
                }
            }
            (Some(ours), theirs) if ours == theirs => {}
            (Some(ours), theirs) => {
                let loser = if incoming_wins {
                    std::mem::replace(ours, theirs.clone())
                } else {
                    theirs.clone()
                };
                discarded.insert(key.clone(), loser);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    /// (primary, secondary, policy, kept, discarded)
    fn table() -> Vec<(Value, Value, MergePolicy, Value, Value)> {
        use MergePolicy::*;
        vec![
            // Auth0's behaviour: nothing of the secondary survives.
            (
                json!({"a": 1}),
                json!({"b": 2}),
                None,
                json!({"a": 1}),
                json!({"b": 2}),
            ),
            // Disjoint keys are simply added, whoever wins.
            (
                json!({"a": 1}),
                json!({"b": 2}),
                PrimaryWins,
                json!({"a": 1, "b": 2}),
                json!({}),
            ),
            (
                json!({"a": 1}),
                json!({"b": 2}),
                SecondaryWins,
                json!({"a": 1, "b": 2}),
                json!({}),
            ),
            // A leaf conflict: the winner stays, the loser is reported.
            (
                json!({"plan": "pro"}),
                json!({"plan": "free"}),
                PrimaryWins,
                json!({"plan": "pro"}),
                json!({"plan": "free"}),
            ),
            (
                json!({"plan": "pro"}),
                json!({"plan": "free"}),
                SecondaryWins,
                json!({"plan": "free"}),
                json!({"plan": "pro"}),
            ),
            // Objects merge deeply.
            (
                json!({"prefs": {"theme": "dark", "lang": "fr"}}),
                json!({"prefs": {"theme": "light", "tz": "UTC"}}),
                PrimaryWins,
                json!({"prefs": {"theme": "dark", "lang": "fr", "tz": "UTC"}}),
                json!({"prefs": {"theme": "light"}}),
            ),
            (
                json!({"prefs": {"theme": "dark", "lang": "fr"}}),
                json!({"prefs": {"theme": "light", "tz": "UTC"}}),
                SecondaryWins,
                json!({"prefs": {"theme": "light", "lang": "fr", "tz": "UTC"}}),
                json!({"prefs": {"theme": "dark"}}),
            ),
            // Arrays are leaves: replaced whole, never concatenated.
            (
                json!({"roles": ["admin"]}),
                json!({"roles": ["reader", "writer"]}),
                SecondaryWins,
                json!({"roles": ["reader", "writer"]}),
                json!({"roles": ["admin"]}),
            ),
            // An object against a leaf is a leaf conflict.
            (
                json!({"x": {"deep": true}}),
                json!({"x": 3}),
                PrimaryWins,
                json!({"x": {"deep": true}}),
                json!({"x": 3}),
            ),
            // null is a value like any other.
            (
                json!({"x": null}),
                json!({"x": 1}),
                SecondaryWins,
                json!({"x": 1}),
                json!({"x": null}),
            ),
            // Equal values are no conflict.
            (
                json!({"x": [1, 2]}),
                json!({"x": [1, 2]}),
                PrimaryWins,
                json!({"x": [1, 2]}),
                json!({}),
            ),
        ]
    }

    #[test]
    fn every_policy_on_the_table_of_pairs() {
        for (primary, secondary, policy, kept, discarded) in table() {
            let merged = merge(&obj(primary.clone()), &obj(secondary.clone()), policy);
            assert_eq!(
                Value::Object(merged.kept),
                kept,
                "{policy:?}: {primary} + {secondary}"
            );
            assert_eq!(
                Value::Object(merged.discarded),
                discarded,
                "{policy:?}: {primary} + {secondary}"
            );
        }
    }

    #[test]
    fn policy_names() {
        assert_eq!(MergePolicy::parse("none"), Some(MergePolicy::None));
        assert_eq!(
            MergePolicy::parse("primary-wins"),
            Some(MergePolicy::PrimaryWins)
        );
        assert_eq!(
            MergePolicy::parse("secondary-wins"),
            Some(MergePolicy::SecondaryWins)
        );
        assert_eq!(MergePolicy::parse("Primary-Wins"), None);
        assert_eq!(MergePolicy::default(), MergePolicy::None);
    }
}
