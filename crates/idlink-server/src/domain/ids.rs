//! Random identifiers in Auth0's formats.

use rand::Rng;
use rand::distributions::Alphanumeric;

fn alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A connection id: `con_` + 16 alphanumerics.
pub fn connection_id() -> String {
    format!("con_{}", alphanumeric(16))
}

/// A job id: `job_` + 16 alphanumerics.
pub fn job_id() -> String {
    format!("job_{}", alphanumeric(16))
}

/// The provider-side id of a database user: 24 lowercase hex characters.
pub fn database_user_id() -> String {
    hex::encode(rand::thread_rng().r#gen::<[u8; 12]>())
}

/// A client id: 32 alphanumerics.
pub fn client_id() -> String {
    alphanumeric(32)
}

/// A client secret: 64 alphanumerics (~380 bits).
pub fn client_secret() -> String {
    alphanumeric(64)
}

/// A key id for the JWKS.
pub fn key_id() -> String {
    alphanumeric(22)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let con = connection_id();
        assert!(con.starts_with("con_") && con.len() == 20);
        assert!(con[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        let id = database_user_id();
        assert_eq!(id.len(), 24);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
    }
}
