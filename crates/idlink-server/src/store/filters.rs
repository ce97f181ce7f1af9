//! WHERE clauses shared by the backends, written into a [`Sql`] (`?` placeholders,
//! which each backend spells its own way when it runs the statement).

use super::core::Param;
use super::reads::Sql;
use super::search_sql::{self, Dialect};
use crate::domain::audit::LogQuery;
use crate::domain::users::UserQuery;

/// `WHERE …` for a user search over `users u`, in `dialect`.
pub fn push_user_search(sql: &mut Sql, query: &UserQuery, dialect: Dialect) {
    sql.push(" WHERE ");
    let fragment = search_sql::condition(&query.filter, dialect);
    // The fragment's SQL holds no `?` but its placeholders.
    let params = fragment.params.iter().map(|param| match param {
        search_sql::Param::Text(text) => Param::Text(Some(text.clone())),
        search_sql::Param::Integer(n) => Param::Int(*n),
        search_sql::Param::Boolean(b) => Param::Bool(*b),
    });
    sql.push_with(&fragment.sql, params);
}

/// ` ORDER BY … LIMIT … OFFSET …` for a page of users.
pub fn push_user_page(sql: &mut Sql, query: &UserQuery) {
    sql.push(&search_sql::order_by(query.sort));
    push_page(sql, query.per_page, query.offset());
}

/// `WHERE …` over `logs`: events about a user (as primary or secondary), of a type.
pub fn push_log_filter(sql: &mut Sql, query: &LogQuery) {
    sql.push(" WHERE 1 = 1");
    if let Some(user_id) = &query.user_id {
        sql.push(" AND (user_id = ")
            .bind(user_id)
            .push(" OR secondary_user_id = ")
            .bind(user_id)
            .push(")");
    }
    if let Some(outcome) = query.outcome {
        sql.push(" AND type = ").bind(outcome.code());
    }
}

/// ` ORDER BY … LIMIT … OFFSET …` for a page of the log.
pub fn push_log_page(sql: &mut Sql, query: &LogQuery) {
    sql.push(if query.ascending {
        " ORDER BY seq ASC"
    } else {
        " ORDER BY seq DESC"
    });
    push_page(sql, query.per_page, query.offset());
}

fn push_page(sql: &mut Sql, per_page: impl TryInto<i64>, offset: impl TryInto<i64>) {
    sql.push(" LIMIT ")
        .bind(per_page.try_into().unwrap_or(i64::MAX))
        .push(" OFFSET ")
        .bind(offset.try_into().unwrap_or(i64::MAX));
}
