//! WHERE clauses shared by the backends. `QueryBuilder` writes each database's own
//! placeholders (`?` or `$n`), so one builder serves both.

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::domain::audit::LogQuery;
use crate::domain::users::{SearchField, UserQuery};

/// `WHERE …` for a user search over `users u`.
pub fn push_user_search<'a, DB>(builder: &mut QueryBuilder<'a, DB>, query: &UserQuery)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    builder.push(" WHERE 1 = 1");
    for term in &query.terms {
        let column = match term.field {
            SearchField::Email => {
                builder
                    .push(" AND u.email_lower = ")
                    .push_bind(term.value.to_lowercase());
                continue;
            }
            SearchField::IdentityConnection | SearchField::IdentityProvider => {
                let column = if term.field == SearchField::IdentityConnection {
                    "connection_name"
                } else {
                    "provider"
                };
                builder
                    .push(format!(
                        " AND EXISTS (SELECT 1 FROM identities i WHERE i.owner_user_id = u.user_id AND i.{column} = "
                    ))
                    .push_bind(term.value.clone())
                    .push(")");
                continue;
            }
            SearchField::UserId => "user_id",
            SearchField::Name => "name",
            SearchField::Username => "username",
            SearchField::Nickname => "nickname",
            SearchField::GivenName => "given_name",
            SearchField::FamilyName => "family_name",
        };
        builder
            .push(format!(" AND u.{column} = "))
            .push_bind(term.value.clone());
    }
}

/// `WHERE …` over `logs`: events about a user (as primary or secondary), of a type.
pub fn push_log_filter<'a, DB>(builder: &mut QueryBuilder<'a, DB>, query: &LogQuery)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    builder.push(" WHERE 1 = 1");
    if let Some(user_id) = &query.user_id {
        builder
            .push(" AND (user_id = ")
            .push_bind(user_id.clone())
            .push(" OR secondary_user_id = ")
            .push_bind(user_id.clone())
            .push(")");
    }
    if let Some(outcome) = query.outcome {
        builder
            .push(" AND type = ")
            .push_bind(outcome.code().to_owned());
    }
}

/// ` ORDER BY … LIMIT … OFFSET …` for a page of the log.
pub fn push_log_page<'a, DB>(builder: &mut QueryBuilder<'a, DB>, query: &LogQuery)
where
    DB: Database,
    i64: Encode<'a, DB> + Type<DB>,
{
    builder
        .push(if query.ascending {
            " ORDER BY seq ASC"
        } else {
            " ORDER BY seq DESC"
        })
        .push(" LIMIT ")
        .push_bind(i64::try_from(query.per_page).unwrap_or(i64::MAX))
        .push(" OFFSET ")
        .push_bind(i64::try_from(query.offset()).unwrap_or(i64::MAX));
}
