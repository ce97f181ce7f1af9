//! User search (`GET /api/v2/users?q=…&search_engine=v3`): the Lucene subset Auth0
//! documents for v3, parsed by `tantivy-query-grammar` (a maintained Lucene-style
//! grammar) and validated here into a [`Query`] of plain data — allowed fields only,
//! values of the field's type. Pure: the store turns it into SQL with bound parameters
//! (`store/search_sql.rs`).
//!
//! Supported: `field:value`, `field:"a phrase"`, `*` wildcards anywhere in an unquoted
//! value (`jo*`, `*son`, `j*n`), `AND`/`OR`/`NOT`/`+`/`-` and parentheses, ranges
//! `[a TO b]`/`{a TO b}` (`*` for an open end) on dates and `logins_count`,
//! `_exists_:field` (and `field:*`). Terms without an operator are ORed, as in Lucene.
//! Everything else (field-less terms, regexes, `IN` sets, boosts, slop, unknown fields)
//! is a 400 `invalid_query_string` naming what is not supported.

use tantivy_query_grammar::{Occur, UserInputAst, UserInputBound, UserInputLeaf};

use super::error::{Error, Result};

/// A root attribute of the user that can be searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootField {
    UserId,
    Email,
    EmailVerified,
    Name,
    GivenName,
    FamilyName,
    Nickname,
    Username,
    PhoneNumber,
    Blocked,
    CreatedAt,
    UpdatedAt,
    LastLogin,
    LoginsCount,
}

/// An attribute of any of the user's identities (`identities.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityField {
    /// The provider-side id, by its string form (GitHub's integer ids too).
    UserId,
    Connection,
    Provider,
    IsSocial,
}

/// Which metadata a `*_metadata.…` field reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataColumn {
    User,
    App,
}

/// A searchable field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Root(RootField),
    Identity(IdentityField),
    /// A key path inside `user_metadata` or `app_metadata`; every segment is
    /// `[A-Za-z0-9_-]+`.
    Metadata(MetadataColumn, Vec<String>),
}

/// The type of a field's values, which decides how a value is read and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Compared exactly (case-sensitive).
    Text,
    /// Compared case-insensitively (`email`).
    CaseInsensitiveText,
    Boolean,
    Integer,
    /// ISO-8601 date or date-time, compared in time order.
    Date,
    /// A metadata value, compared by its JSON text (`true`, `42`, `pro`).
    Json,
}

impl Field {
    /// Parses a field name; the error names the field.
    pub fn parse(name: &str) -> Result<Self> {
        use RootField::*;
        let root = match name {
            "user_id" => Some(UserId),
            "email" => Some(Email),
            "email_verified" => Some(EmailVerified),
            "name" => Some(Name),
            "given_name" => Some(GivenName),
            "family_name" => Some(FamilyName),
            "nickname" => Some(Nickname),
            "username" => Some(Username),
            "phone_number" => Some(PhoneNumber),
            "blocked" => Some(Blocked),
            "created_at" => Some(CreatedAt),
            "updated_at" => Some(UpdatedAt),
            "last_login" => Some(LastLogin),
            "logins_count" => Some(LoginsCount),
            _ => None,
        };
        if let Some(root) = root {
            return Ok(Field::Root(root));
        }
        let identity = match name {
            "identities.user_id" => Some(IdentityField::UserId),
            "identities.connection" => Some(IdentityField::Connection),
            "identities.provider" => Some(IdentityField::Provider),
            "identities.isSocial" => Some(IdentityField::IsSocial),
            _ => None,
        };
        if let Some(identity) = identity {
            return Ok(Field::Identity(identity));
        }
        for (prefix, column) in [
            ("user_metadata.", MetadataColumn::User),
            ("app_metadata.", MetadataColumn::App),
        ] {
            if let Some(path) = name.strip_prefix(prefix) {
                let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
                let valid = segments.iter().all(|s| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                });
                if !valid {
                    return Err(invalid(format!(
                        "'{name}' is not a valid metadata field (use letters, digits, '_' and '-' between dots)"
                    )));
                }
                return Ok(Field::Metadata(column, segments));
            }
        }
        Err(invalid(format!("unsupported search field '{name}'")))
    }

    /// The type of its values.
    pub fn kind(&self) -> Kind {
        use RootField::*;
        match self {
            Field::Root(Email) => Kind::CaseInsensitiveText,
            Field::Root(EmailVerified | Blocked) | Field::Identity(IdentityField::IsSocial) => {
                Kind::Boolean
            }
            Field::Root(LoginsCount) => Kind::Integer,
            Field::Root(CreatedAt | UpdatedAt | LastLogin) => Kind::Date,
            Field::Metadata(..) => Kind::Json,
            Field::Root(_) | Field::Identity(_) => Kind::Text,
        }
    }
}

/// A value, of its field's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Boolean(bool),
    Integer(i64),
}

/// One piece of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternPart {
    Literal(String),
    /// `*`: any run of characters.
    Any,
}

/// One end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Inclusive(Value),
    Exclusive(Value),
    Unbounded,
}

/// What a term asks of its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Equals(Value),
    /// Wildcards, matched case-insensitively.
    Like(Vec<PatternPart>),
    Range {
        lower: Bound,
        upper: Bound,
    },
    Exists,
}

/// A validated search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every user (an empty `q`).
    All,
    Term {
        field: Field,
        matcher: Matcher,
    },
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

fn invalid(why: impl std::fmt::Display) -> Error {
    Error::InvalidQuery(format!("Query validation error: {why}"))
}

/// Parses and validates `q`. An empty or blank `q` finds every user.
pub fn parse(q: &str) -> Result<Query> {
    if q.trim().is_empty() {
        return Ok(Query::All);
    }
    let ast = tantivy_query_grammar::parse_query(q).map_err(|_| {
        invalid(format!(
            "could not parse '{q}' (supported: field:value, field:\"phrase\", * wildcards, AND/OR/NOT, parentheses, [a TO b] and {{a TO b}} ranges, _exists_:field)"
        ))
    })?;
    from_ast(&ast)
}

fn from_ast(ast: &UserInputAst) -> Result<Query> {
    match ast {
        UserInputAst::Leaf(leaf) => from_leaf(leaf),
        UserInputAst::Boost(..) => Err(invalid("boosts (^) are not supported")),
        UserInputAst::Clause(clauses) => {
            let (mut must, mut should, mut must_not) = (Vec::new(), Vec::new(), Vec::new());
            for (occur, clause) in clauses {
                let query = from_ast(clause)?;
                match occur {
                    Some(Occur::Must) => must.push(query),
                    Some(Occur::MustNot) => must_not.push(query),
                    // Lucene: terms without an operator are optional, so ORed.
                    Some(Occur::Should) | None => should.push(query),
                }
            }
            // Lucene semantics: with a required clause, optional ones only score, so they
            // do not filter.
            if must.is_empty() && !should.is_empty() {
                must.push(if should.len() == 1 {
                    should.remove(0)
                } else {
                    Query::Or(should)
                });
            }
            must.extend(must_not.into_iter().map(|q| Query::Not(Box::new(q))));
            Ok(match must.len() {
                0 => Query::All,
                1 => must.remove(0),
                _ => Query::And(must),
            })
        }
    }
}

fn from_leaf(leaf: &UserInputLeaf) -> Result<Query> {
    match leaf {
        UserInputLeaf::Literal(literal) => {
            let name = literal.field_name.as_deref().ok_or_else(|| {
                invalid(format!(
                    "'{}' has no field: write field:value",
                    literal.phrase
                ))
            })?;
            if literal.slop > 0 || literal.prefix {
                return Err(invalid("slop (~) and phrase prefixes are not supported"));
            }
            if name == "_exists_" {
                let field = Field::parse(&literal.phrase)?;
                return Ok(Query::Term {
                    field,
                    matcher: Matcher::Exists,
                });
            }
            let field = Field::parse(name)?;
            let quoted = !matches!(literal.delimiter, tantivy_query_grammar::Delimiter::None);
            let matcher = if !quoted && has_wildcard(&literal.phrase) {
                match field.kind() {
                    Kind::Text | Kind::CaseInsensitiveText | Kind::Json => {
                        Matcher::Like(pattern(&literal.phrase))
                    }
                    _ => {
                        return Err(invalid(format!("wildcards are not supported on '{name}'")));
                    }
                }
            } else {
                Matcher::Equals(value(&field, name, &unescape(&literal.phrase))?)
            };
            Ok(Query::Term { field, matcher })
        }
        UserInputLeaf::Exists { field } => Ok(Query::Term {
            field: Field::parse(field)?,
            matcher: Matcher::Exists,
        }),
        UserInputLeaf::Range {
            field,
            lower,
            upper,
        } => {
            let name = field
                .as_deref()
                .ok_or_else(|| invalid("a range needs a field"))?;
            let field = Field::parse(name)?;
            if !matches!(field.kind(), Kind::Date | Kind::Integer) {
                return Err(invalid(format!(
                    "ranges are supported on dates and logins_count, not '{name}'"
                )));
            }
            let bound = |bound: &UserInputBound| -> Result<Bound> {
                Ok(match bound {
                    UserInputBound::Unbounded => Bound::Unbounded,
                    UserInputBound::Inclusive(v) | UserInputBound::Exclusive(v) if v == "*" => {
                        Bound::Unbounded
                    }
                    UserInputBound::Inclusive(v) => Bound::Inclusive(value(&field, name, v)?),
                    UserInputBound::Exclusive(v) => Bound::Exclusive(value(&field, name, v)?),
                })
            };
            let (lower, upper) = (bound(lower)?, bound(upper)?);
            Ok(Query::Term {
                field,
                matcher: Matcher::Range { lower, upper },
            })
        }
        UserInputLeaf::All => Ok(Query::All),
        UserInputLeaf::Set { .. } => Err(invalid("IN sets are not supported")),
        UserInputLeaf::Regex { .. } => Err(invalid("regular expressions are not supported")),
    }
}

/// Whether an unquoted value holds an unescaped `*`.
fn has_wildcard(raw: &str) -> bool {
    let mut escaped = false;
    raw.chars().any(|c| {
        let wildcard = c == '*' && !escaped;
        escaped = c == '\\' && !escaped;
        wildcard
    })
}

/// Drops the escaping backslashes of a value (`a\*b` is the text `a*b`).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

fn pattern(raw: &str) -> Vec<PatternPart> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut escaped = false;
    for c in raw.chars() {
        match (c, escaped) {
            ('\\', false) => escaped = true,
            ('*', false) => {
                if !literal.is_empty() {
                    parts.push(PatternPart::Literal(std::mem::take(&mut literal)));
                }
                if parts.last() != Some(&PatternPart::Any) {
                    parts.push(PatternPart::Any);
                }
            }
            _ => {
                escaped = false;
                literal.push(c);
            }
        }
    }
    if !literal.is_empty() {
        parts.push(PatternPart::Literal(literal));
    }
    parts
}

/// Reads `raw` as a value of `field`'s type.
fn value(field: &Field, name: &str, raw: &str) -> Result<Value> {
    match field.kind() {
        Kind::Boolean => match raw {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => Err(invalid(format!(
                "'{name}' takes true or false, not '{raw}'"
            ))),
        },
        Kind::Integer => raw
            .parse()
            .map(Value::Integer)
            .map_err(|_| invalid(format!("'{name}' takes an integer, not '{raw}'"))),
        Kind::Date => {
            if is_iso_date(raw) {
                Ok(Value::Text(raw.to_owned()))
            } else {
                Err(invalid(format!(
                    "'{name}' takes an ISO-8601 date (2024-01-31) or date-time, not '{raw}'"
                )))
            }
        }
        Kind::Text | Kind::CaseInsensitiveText | Kind::Json => Ok(Value::Text(raw.to_owned())),
    }
}

/// `YYYY-MM-DD`, optionally followed by `T` and an RFC 3339 time. Stored dates are
/// RFC 3339 in UTC (`…Z`), so such values order correctly against them as text.
fn is_iso_date(raw: &str) -> bool {
    use time::format_description::well_known::Rfc3339;
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    match raw.split_once('T') {
        None => time::Date::parse(raw, &date_format).is_ok(),
        Some(_) => time::OffsetDateTime::parse(raw, &Rfc3339).is_ok(),
    }
}

/// A sort order: `field:1` (ascending) or `field:-1` (descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub field: RootField,
    pub ascending: bool,
}

impl Sort {
    /// Parses `sort`; only root attributes sort.
    pub fn parse(raw: &str) -> Result<Self> {
        let (name, direction) = raw
            .rsplit_once(':')
            .ok_or_else(|| invalid(format!("sort '{raw}' must be field:1 or field:-1")))?;
        let ascending = match direction {
            "1" => true,
            "-1" => false,
            _ => return Err(invalid(format!("sort '{raw}' must be field:1 or field:-1"))),
        };
        match Field::parse(name)? {
            Field::Root(field) => Ok(Self { field, ascending }),
            _ => Err(invalid(format!("cannot sort by '{name}'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(field: Field, matcher: Matcher) -> Query {
        Query::Term { field, matcher }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn terms_phrases_and_operators() {
        assert_eq!(
            parse(r#"email:"A@Example.com""#).unwrap(),
            term(
                Field::Root(RootField::Email),
                Matcher::Equals(text("A@Example.com"))
            )
        );
        assert_eq!(
            parse("email:a@b.c AND NOT blocked:true").unwrap(),
            Query::And(vec![
                term(
                    Field::Root(RootField::Email),
                    Matcher::Equals(text("a@b.c"))
                ),
                Query::Not(Box::new(term(
                    Field::Root(RootField::Blocked),
                    Matcher::Equals(Value::Boolean(true))
                ))),
            ])
        );
        assert!(matches!(
            parse("(name:a OR name:b) AND username:c").unwrap(),
            Query::And(ref parts) if matches!(parts[0], Query::Or(_))
        ));
        assert!(matches!(parse("name:a name:b").unwrap(), Query::Or(_)));
        assert_eq!(parse("  ").unwrap(), Query::All);
    }

    #[test]
    fn wildcards_ranges_and_exists() {
        assert_eq!(
            parse("name:*so*n").unwrap(),
            term(
                Field::Root(RootField::Name),
                Matcher::Like(vec![
                    PatternPart::Any,
                    PatternPart::Literal("so".into()),
                    PatternPart::Any,
                    PatternPart::Literal("n".into())
                ])
            )
        );
        assert_eq!(
            parse(r#"name:"jo*""#).unwrap(),
            term(Field::Root(RootField::Name), Matcher::Equals(text("jo*"))),
            "a quoted * is literal"
        );
        assert_eq!(
            parse("logins_count:{1 TO *]").unwrap(),
            term(
                Field::Root(RootField::LoginsCount),
                Matcher::Range {
                    lower: Bound::Exclusive(Value::Integer(1)),
                    upper: Bound::Unbounded
                }
            )
        );
        assert!(parse("created_at:[2024-01-01 TO 2024-12-31T23:59:59Z]").is_ok());
        assert_eq!(
            parse("_exists_:app_metadata.plan").unwrap(),
            term(
                Field::Metadata(MetadataColumn::App, vec!["plan".into()]),
                Matcher::Exists
            )
        );
        assert_eq!(
            parse("identities.user_id:123").unwrap(),
            term(
                Field::Identity(IdentityField::UserId),
                Matcher::Equals(text("123"))
            )
        );
    }

    #[test]
    fn rejected_queries() {
        for q in [
            "password:x",
            "hello",
            "email:\"open",
            "a:b)",
            "name:/re.*/",
            "name:\"jo\"~2",
            "name:jo^2",
            "blocked:maybe",
            "logins_count:many",
            "created_at:yesterday",
            "name:[a TO b]",
            "blocked:tru*",
            "user_metadata.a'b:1",
            "user_metadata..x:1",
            "'; DROP TABLE users; --",
        ] {
            match parse(q) {
                Err(Error::InvalidQuery(message)) => {
                    assert!(
                        message.starts_with("Query validation error"),
                        "{q}: {message}"
                    )
                }
                other => panic!("{q} was not rejected: {other:?}"),
            }
        }
    }

    #[test]
    fn sorts() {
        assert_eq!(
            Sort::parse("created_at:-1").unwrap(),
            Sort {
                field: RootField::CreatedAt,
                ascending: false
            }
        );
        assert!(Sort::parse("created_at").is_err());
        assert!(Sort::parse("created_at:2").is_err());
        assert!(Sort::parse("user_metadata.a:1").is_err());
        assert!(Sort::parse("password:1").is_err());
    }
}
