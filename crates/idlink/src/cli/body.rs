//! Request bodies of `users create` and `users update`: `--json BODY` or `--field`s.
//!
//! `--json` takes a JSON object, or `@FILE` to read one from a file. Each `--field`
//! sets one key: `key=value` a string, `key:=json` any JSON value (`true`, `42`,
//! `{"plan":"pro"}`), as HTTPie spells it. A dotted key (`user_metadata.plan=pro`)
//! sets a nested one. `--field`s are applied on top of `--json`.
//!
//! The body is then read into the client's typed request, and any key that the type
//! does not know is refused here (exit 2) rather than silently dropped.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::CliError;

/// The body flags of `users create` and `users update`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BodyArgs {
    /// The request body: a JSON object, or @FILE to read it from a file.
    #[arg(long = "body", value_name = "JSON|@FILE")]
    pub body: Option<String>,
    /// One field: key=string or key:=JSON; dotted keys nest (user_metadata.plan=pro).
    #[arg(long = "field", short = 'f', value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

fn parse_object(source: &str) -> Result<Map<String, Value>, CliError> {
    let text = match source.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read --body file {path}: {e}")))?,
        None => source.to_owned(),
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(usage("--body must be a JSON object")),
        Err(e) => Err(usage(format!("--body is not valid JSON: {e}"))),
    }
}

/// Splits `key=value` / `key:=json` into the key and its value.
fn parse_field(field: &str) -> Result<(&str, Value), CliError> {
    let Some(eq) = field.find('=') else {
        return Err(usage(format!(
            "--field `{field}`: expected key=value or key:=json"
        )));
    };
    let (key, value) = (&field[..eq], &field[eq + 1..]);
    match key.strip_suffix(':') {
        Some(key) => serde_json::from_str(value)
            .map(|json| (key, json))
            .map_err(|e| {
                usage(format!(
                    "--field `{field}`: the value is not valid JSON: {e}"
                ))
            }),
        None => Ok((key, Value::String(value.to_owned()))),
    }
}

/// Sets `value` at the dotted `key` in `object`, creating objects on the way.
fn set_path(object: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), CliError> {
    let mut parts = key.split('.').peekable();
    let mut current = object;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(usage(format!("--field: empty key segment in `{key}`")));
        }
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return Ok(());
        }
        let next = current
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        current = next
            .as_object_mut()
            .ok_or_else(|| usage(format!("--field `{key}`: `{part}` is not an object")))?;
    }
    Ok(())
}

impl BodyArgs {
    /// The body as a JSON object: `--body`, then each `--field` on top.
    pub fn object(&self) -> Result<Map<String, Value>, CliError> {
        let mut object = match &self.body {
            Some(source) => parse_object(source)?,
            None => Map::new(),
        };
        for field in &self.fields {
            let (key, value) = parse_field(field)?;
            set_path(&mut object, key, value)?;
        }
        if object.is_empty() {
            return Err(usage("empty body: pass --body JSON or --field key=value"));
        }
        Ok(object)
    }

    /// The body as the typed request `T`, refusing keys `T` would drop.
    pub fn typed<T: DeserializeOwned + Serialize>(&self) -> Result<T, CliError> {
        let object = self.object()?;
        let typed: T = serde_json::from_value(Value::Object(object.clone()))
            .map_err(|e| usage(format!("invalid body: {e}")))?;
        let kept = serde_json::to_value(&typed).map_err(|e| usage(format!("invalid body: {e}")))?;
        let unknown: Vec<&str> = object
            .iter()
            // A null may legitimately vanish (an unset optional field).
            .filter(|(key, value)| !value.is_null() && kept.get(key.as_str()).is_none())
            .map(|(key, _)| key.as_str())
            .collect();
        if unknown.is_empty() {
            Ok(typed)
        } else {
            Err(usage(format!("unknown field(s): {}", unknown.join(", "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(json: Option<&str>, fields: &[&str]) -> BodyArgs {
        BodyArgs {
            body: json.map(str::to_owned),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn fields_are_strings_or_json_and_nest() {
        let object = body(
            Some(r#"{"connection":"db","user_metadata":{"a":1}}"#),
            &[
                "email=a@example.com",
                "email_verified:=true",
                "user_metadata.plan=pro",
            ],
        )
        .object()
        .unwrap();
        assert_eq!(
            Value::Object(object),
            json!({"connection":"db","email":"a@example.com","email_verified":true,
                   "user_metadata":{"a":1,"plan":"pro"}})
        );
    }

    #[test]
    fn bad_inputs_are_usage_errors() {
        for args in [
            body(Some("[1]"), &[]),
            body(Some("{"), &[]),
            body(None, &["novalue"]),
            body(None, &["n:=nope"]),
            body(None, &[".x=1"]),
            body(None, &["a=1", "a.b=2"]),
            body(None, &[]),
        ] {
            assert!(matches!(args.object(), Err(CliError::Usage(_))), "{args:?}");
        }
    }

    #[test]
    fn keys_the_type_drops_are_refused() {
        let err = body(None, &["name=Ada", "nmae=typo"])
            .typed::<idlink_client::UpdateUserRequestContent>()
            .unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
    }
}
