//! A validated user search ([`crate::domain::search::Query`]) as a SQL condition over
//! `users u`, for both backends: SQL text with `?` placeholders and the typed values to
//! bind to them, in order. No user text is ever written into the SQL — values, LIKE
//! patterns (with `%`, `_` and `\` escaped) and JSON paths are all parameters. Only the
//! few things the databases spell differently go through [`Dialect`]. Independent of any
//! driver: `filters.rs` binds the result into sqlx queries.

use crate::domain::search::{
    Bound, Field, IdentityField, Kind, Matcher, MetadataColumn, PatternPart, Query, RootField,
    Sort, Value,
};

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

/// SQL text with `?` placeholders, and their values in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Fragment {
    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    fn bind(&mut self, param: Param) -> &mut Self {
        self.sql.push('?');
        self.params.push(param);
        self
    }

    fn append(&mut self, other: Fragment) -> &mut Self {
        self.sql.push_str(&other.sql);
        self.params.extend(other.params);
        self
    }
}

/// Where the backends differ: reading a value out of the JSON text of a metadata column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A JSON path as this database spells it, to bind.
    fn path(self, path: &[String]) -> Param {
        Param::Text(match self {
            Dialect::Sqlite => sqlite_path(path),
            Dialect::Postgres => postgres_path(path),
        })
    }

    /// The metadata value at `path` as text (`true`, `42`, `pro`), NULL when absent.
    fn json_text(self, column: &str, path: &[String], out: &mut Fragment) {
        match self {
            Dialect::Sqlite => {
                // json_extract gives booleans as 1/0: spell them as JSON does.
                out.push(&format!("(CASE json_type({column}, "))
                    .bind(self.path(path))
                    .push(&format!(
                        ") WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(json_extract({column}, "
                    ))
                    .bind(self.path(path))
                    .push(") AS TEXT) END)");
            }
            Dialect::Postgres => {
                out.push(&format!("({column}::jsonb #>> CAST("))
                    .bind(self.path(path))
                    .push(" AS text[]))");
            }
        }
    }

    /// Whether the metadata has a value at `path`.
    fn json_exists(self, column: &str, path: &[String], out: &mut Fragment) {
        let (open, close) = match self {
            Dialect::Sqlite => (format!("(json_type({column}, "), ") IS NOT NULL)"),
            Dialect::Postgres => (
                format!("(({column}::jsonb #> CAST("),
                " AS text[])) IS NOT NULL)",
            ),
        };
        out.push(&open).bind(self.path(path)).push(close);
    }
}

/// `$."a"."b"`: every segment quoted (segments are `[A-Za-z0-9_-]+`, checked by the
/// domain; the path is a bound value all the same).
fn sqlite_path(path: &[String]) -> String {
    path.iter().fold(String::from("$"), |mut out, segment| {
        out.push_str(&format!(".\"{segment}\""));
        out
    })
}

/// `{a,b}`, a PostgreSQL text array literal.
fn postgres_path(path: &[String]) -> String {
    format!("{{{}}}", path.join(","))
}

fn root_column(field: RootField) -> &'static str {
    use RootField::*;
    match field {
        UserId => "u.user_id",
        // Compared through the lowercased copy: email search is case-insensitive.
        Email => "u.email_lower",
        EmailVerified => "u.email_verified",
        Name => "u.name",
        GivenName => "u.given_name",
        FamilyName => "u.family_name",
        Nickname => "u.nickname",
        Username => "u.username",
        PhoneNumber => "u.phone_number",
        Blocked => "u.blocked",
        CreatedAt => "u.created_at",
        UpdatedAt => "u.updated_at",
        LastLogin => "u.last_login",
        LoginsCount => "u.logins_count",
    }
}

fn identity_column(field: IdentityField) -> &'static str {
    match field {
        IdentityField::UserId => "i.identity_user_id",
        IdentityField::Connection => "i.connection_name",
        IdentityField::Provider => "i.provider",
        IdentityField::IsSocial => "i.is_social",
    }
}

fn param(value: &Value, kind: Kind) -> Param {
    match value {
        Value::Text(s) if kind == Kind::CaseInsensitiveText => Param::Text(s.to_lowercase()),
        Value::Text(s) => Param::Text(s.clone()),
        Value::Integer(n) => Param::Integer(*n),
        Value::Boolean(b) => Param::Boolean(*b),
    }
}

/// A LIKE pattern: literal parts with `\`, `%` and `_` escaped, `*` as `%`; lowercased
/// (wildcard matching is case-insensitive).
fn like_pattern(parts: &[PatternPart]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            PatternPart::Any => out.push('%'),
            PatternPart::Literal(text) => {
                for c in text.to_lowercase().chars() {
                    if matches!(c, '\\' | '%' | '_') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    out
}

/// The condition `field` meets `matcher`, on the value expression `value` (which the
/// caller has written into `out` via `write_value`).
fn compare(write_value: &dyn Fn(&mut Fragment), kind: Kind, matcher: &Matcher, out: &mut Fragment) {
    match matcher {
        Matcher::Equals(value) => {
            out.push("(");
            write_value(out);
            out.push(" = ").bind(param(value, kind)).push(")");
        }
        Matcher::Like(parts) => {
            out.push("(lower(");
            write_value(out);
            out.push(") LIKE ")
                .bind(Param::Text(like_pattern(parts)))
                .push(" ESCAPE '\\')");
        }
        Matcher::Range { lower, upper } => {
            out.push("(1 = 1");
            for (bound, inclusive, exclusive) in [(lower, " >= ", " > "), (upper, " <= ", " < ")] {
                let (operator, value) = match bound {
                    Bound::Unbounded => continue,
                    Bound::Inclusive(v) => (inclusive, v),
                    Bound::Exclusive(v) => (exclusive, v),
                };
                out.push(" AND ");
                write_value(out);
                out.push(operator).bind(param(value, kind));
            }
            out.push(")");
        }
        Matcher::Exists => {
            out.push("(");
            write_value(out);
            out.push(" IS NOT NULL)");
        }
    }
}

/// `_exists_` on a root attribute: present on the wire (see `UserRecord::to_wire`).
fn root_exists(field: RootField, out: &mut Fragment) {
    match field {
        RootField::EmailVerified => {
            out.push("(u.email IS NOT NULL)");
        }
        RootField::Blocked => {
            out.push("(u.blocked = ")
                .bind(Param::Boolean(true))
                .push(" OR u.blocked_ever_set = ")
                .bind(Param::Boolean(true))
                .push(")");
        }
        RootField::LoginsCount => {
            out.push("(u.logins_count > 0 OR u.last_login IS NOT NULL)");
        }
        other => {
            out.push(&format!("({} IS NOT NULL)", root_column(other)));
        }
    }
}

/// [`compare`] on a plain column.
fn compare_column(column: &'static str, kind: Kind, matcher: &Matcher, out: &mut Fragment) {
    compare(
        &|out: &mut Fragment| {
            out.push(column);
        },
        kind,
        matcher,
        out,
    );
}

fn term(field: &Field, matcher: &Matcher, dialect: Dialect, out: &mut Fragment) {
    let kind = field.kind();
    match field {
        Field::Root(root) => {
            if *matcher == Matcher::Exists {
                return root_exists(*root, out);
            }
            compare_column(root_column(*root), kind, matcher, out);
        }
        Field::Identity(identity) => {
            out.push("EXISTS (SELECT 1 FROM identities i WHERE i.owner_user_id = u.user_id");
            if *matcher != Matcher::Exists {
                out.push(" AND ");
                compare_column(identity_column(*identity), kind, matcher, out);
            }
            out.push(")");
        }
        Field::Metadata(which, path) => {
            let column = match which {
                MetadataColumn::User => "u.user_metadata",
                MetadataColumn::App => "u.app_metadata",
            };
            if *matcher == Matcher::Exists {
                return dialect.json_exists(column, path, out);
            }
            compare(
                &|out: &mut Fragment| dialect.json_text(column, path, out),
                kind,
                matcher,
                out,
            );
        }
    }
}

/// The search as a condition over `users u`.
pub fn condition(query: &Query, dialect: Dialect) -> Fragment {
    let mut out = Fragment::default();
    write(query, dialect, &mut out);
    out
}

fn write(query: &Query, dialect: Dialect, out: &mut Fragment) {
    match query {
        Query::All => {
            out.push("(1 = 1)");
        }
        Query::Term { field, matcher } => term(field, matcher, dialect, out),
        Query::Not(inner) => {
            let mut negated = Fragment::default();
            write(inner, dialect, &mut negated);
            // NULL-safe: a user without the attribute does not match it, so it matches
            // its negation.
            out.push("(NOT COALESCE(")
                .append(negated)
                .push(", ")
                .bind(Param::Boolean(false))
                .push("))");
        }
        Query::And(parts) | Query::Or(parts) => {
            let joiner = if matches!(query, Query::And(_)) {
                " AND "
            } else {
                " OR "
            };
            out.push("(");
            for (index, part) in parts.iter().enumerate() {
                if index > 0 {
                    out.push(joiner);
                }
                write(part, dialect, out);
            }
            out.push(")");
        }
    }
}

/// `ORDER BY` for a listing: the requested attribute (missing values last on both
/// backends), then `user_id` so pages are stable; by creation by default.
pub fn order_by(sort: Option<Sort>) -> String {
    match sort {
        None => " ORDER BY u.created_at, u.user_id".to_owned(),
        Some(Sort { field, ascending }) => {
            let column = root_column(field);
            let direction = if ascending { "ASC" } else { "DESC" };
            format!(" ORDER BY ({column} IS NULL), {column} {direction}, u.user_id")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::search::parse;

    #[test]
    fn user_text_is_only_ever_bound() {
        let hostile =
            r#"name:"x' OR '1'='1" OR user_metadata.a:"); DROP TABLE users; --" OR nickname:*%_*"#;
        let fragment = condition(&parse(hostile).unwrap(), Dialect::Sqlite);
        assert!(!fragment.sql.contains("DROP"), "{}", fragment.sql);
        assert!(!fragment.sql.contains("'1'"), "{}", fragment.sql);
        assert_eq!(fragment.sql.matches('?').count(), fragment.params.len());
        assert!(
            fragment.params.contains(&Param::Text("%\\%\\_%".into())),
            "{:?}",
            fragment.params
        );
    }

    #[test]
    fn dialects_differ_only_in_json_access() {
        let query = parse("app_metadata.plan:pro").unwrap();
        let sqlite = condition(&query, Dialect::Sqlite);
        let postgres = condition(&query, Dialect::Postgres);
        assert!(sqlite.sql.contains("json_extract"));
        assert!(postgres.sql.contains("#>>"));
        assert!(sqlite.params.contains(&Param::Text("$.\"plan\"".into())));
        assert!(postgres.params.contains(&Param::Text("{plan}".into())));
    }

    #[test]
    fn orders() {
        assert_eq!(order_by(None), " ORDER BY u.created_at, u.user_id");
        let sort = Sort::parse("logins_count:-1").unwrap();
        assert!(order_by(Some(sort)).contains("u.logins_count DESC"));
    }
}
