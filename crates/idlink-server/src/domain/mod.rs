//! The rules of linking and of users, as pure functions over plain data. Nothing here
//! knows HTTP or a database: refusals are [`error::Error`], mapped to Auth0's error body
//! by [`crate::error`].

pub mod audit;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod invented;
pub mod linking;
pub mod merge;
pub mod model;
pub mod password;
pub mod payload;
pub mod search;
pub mod sign_in_linking;
pub mod users;

pub use error::Error;

#[cfg(test)]
mod tests {
    /// The rules stay pure: no module under `domain/` reaches for HTTP, the database or
    /// the HTTP-facing error type (which would let a rule answer with a status code).
    #[test]
    fn the_domain_imports_nothing_from_http_or_the_store() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
        let forbidden = [
            "axum",
            "sqlx",
            "rusqlite",
            "http::",
            "crate::http",
            "crate::store",
            "crate::error",
            "crate::auth",
        ];
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            // The code, not its comments nor the tests (this one names what it forbids).
            let code = source.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for word in forbidden {
                    assert!(
                        !line.contains(word),
                        "{} uses {word}: {line}",
                        path.display()
                    );
                }
            }
            checked += 1;
        }
        assert!(checked >= 5, "read the domain's files");
    }
}
