//! Typed request bodies: decoding them with serde, and saying what is wrong in the
//! client's terms (JSON types and property names), never serde's ("untagged enum",
//! "a map", "floating point").

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{Error, Result};

/// Decodes `body` into `T`; a failure is a 400 `invalid_body` in Auth0's words, e.g.
/// `Payload validation error: 'Expected type string but found type integer' on property
/// email.`
pub fn decode<T: DeserializeOwned>(body: &Value) -> Result<T> {
    serde_path_to_error::deserialize(body.clone()).map_err(|err| {
        let property = err.path().to_string();
        let reason = describe(&err.into_inner().to_string());
        Error::InvalidBody(if property == "." {
            format!("Payload validation error: '{reason}'.")
        } else {
            format!("Payload validation error: '{reason}' on property {property}.")
        })
    })
}

/// Rewrites serde's `invalid type: integer `5`, expected a string` as `Expected type
/// string but found type integer`; other messages (ours, from custom `Deserialize`s) are
/// already in the client's terms and pass through.
fn describe(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ") else {
        return message.to_owned();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return message.to_owned();
    };
    // The found value follows its kind: integer `5`, string "yes".
    let found = [" `", " \""]
        .iter()
        .filter_map(|separator| found.find(separator))
        .min()
        .map_or(found, |end| &found[..end]);
    format!(
        "Expected type {} but found type {}",
        json_type_name(expected),
        json_type_name(found)
    )
}

/// A serde type description in JSON Schema's words.
fn json_type_name(serde: &str) -> &str {
    let word = serde
        .trim_start_matches("a ")
        .trim_start_matches("an ")
        .trim();
    match word {
        "map" | "struct" => "object",
        "sequence" | "tuple" => "array",
        "floating point" => "number",
        "unit value" | "unit" | "null" => "null",
        "i64" | "u64" | "integer" => "integer",
        "boolean" | "bool" => "boolean",
        "string" | "str" | "char" => "string",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: Option<String>,
        verified: Option<bool>,
        user_id: Option<idlink_types::UserId>,
        meta: Option<serde_json::Map<String, Value>>,
    }

    fn message(body: Value) -> String {
        match decode::<Body>(&body) {
            Err(Error::InvalidBody(message)) => message,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn messages_name_json_types_and_properties() {
        assert_eq!(
            message(json!({"email": 5})),
            "Payload validation error: 'Expected type string but found type integer' on property email."
        );
        assert_eq!(
            message(json!({"verified": "yes"})),
            "Payload validation error: 'Expected type boolean but found type string' on property verified."
        );
        assert_eq!(
            message(json!({"meta": [1]})),
            "Payload validation error: 'Expected type object but found type array' on property meta."
        );
        let user_id = message(json!({"user_id": 1.5}));
        assert!(
            user_id.contains("'user_id must be a string or an integer between")
                && user_id.ends_with("on property user_id."),
            "{user_id}"
        );
        for body in [
            json!({"email": 5}),
            json!({"user_id": {}}),
            json!({"meta": 1.5}),
        ] {
            let m = message(body);
            for serde_word in [
                "untagged",
                "enum",
                "a map",
                "floating point",
                "invalid type",
            ] {
                assert!(!m.contains(serde_word), "{m}");
            }
        }
    }
}
