//! WHERE clauses shared by the backends. `QueryBuilder` writes each database's own
//! placeholders (`?` or `$n`), so one builder serves both.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::search_sql::{self, Dialect, Fragment, Param};
use crate::domain::audit::LogQuery;
use crate::domain::users::UserQuery;

/// `WHERE …` for a user search over `users u`, in `dialect`.
pub fn push_user_search<'a, DB>(
    builder: &mut QueryBuilder<'a, DB>,
    query: &UserQuery,
    dialect: Dialect,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    builder.push(" WHERE ");
    push_fragment(builder, &search_sql::condition(&query.filter, dialect));
}

/// ` ORDER BY …` for a page of users (the page itself is bound by the backend).
pub fn push_user_order<DB: Database>(builder: &mut QueryBuilder<'_, DB>, query: &UserQuery) {
    builder.push(search_sql::order_by(query.sort));
}

/// Binds a [`Fragment`]'s `?` placeholders as sqlx parameters; `QueryBuilder` writes
/// each database's own placeholder. (The fragment's SQL holds no other `?`.)
fn push_fragment<'a, DB>(builder: &mut QueryBuilder<'a, DB>, fragment: &Fragment)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    let mut params = fragment.params.iter();
    for (index, piece) in fragment.sql.split('?').enumerate() {
        if index > 0 {
            match params.next() {
                Some(Param::Text(text)) => builder.push_bind(text.clone()),
                Some(Param::Integer(n)) => builder.push_bind(*n),
                Some(Param::Boolean(b)) => builder.push_bind(*b),
                None => builder,
            };
        }
        builder.push(piece);
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
