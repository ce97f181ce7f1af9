//! The rules of `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): which
//! keys are valid, what makes two requests "the same request", when a stored answer
//! has expired, and the exact bytes a keyed write answers (and stores). Pure: the HTTP
//! layer reads the header and answers, the store writes the key in the change's own
//! transaction. See `docs/idempotency.md`.

use serde::Serialize;

use super::model::{Identity, UserRecord};

/// The longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// How long a key is remembered unless the tenant says otherwise: 24 hours.
pub const DEFAULT_TTL_SECONDS: i64 = 86_400;

/// Why a key was refused (a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong,
    /// A control character, or anything but printable ASCII.
    BadCharacter,
}

impl KeyError {
    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::Empty => "Invalid Idempotency-Key header: it must not be empty.",
            Self::TooLong => "Invalid Idempotency-Key header: it must be at most 255 characters.",
            Self::BadCharacter => {
                "Invalid Idempotency-Key header: only printable ASCII characters are allowed (no control characters)."
            }
        }
    }
}

/// The key as the header carries it: either bare (`abc`) or as the draft's
/// Structured Field string (`"abc"`), which name the same key. Printable ASCII only
/// (space included), 1 to [`MAX_KEY_LEN`] characters.
pub fn parse_key(raw: &[u8]) -> Result<String, KeyError> {
    let inner = match raw {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    };
    if inner.is_empty() {
        return Err(KeyError::Empty);
    }
    if inner.iter().any(|&b| !(0x20..=0x7e).contains(&b)) {
        return Err(KeyError::BadCharacter);
    }
    if inner.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    // Printable ASCII: every byte is one character.
    Ok(inner.iter().map(|&b| char::from(b)).collect())
}

/// Who a key belongs to: the token's client (`azp`) and subject. Two callers never
/// share a key, so one can never read another's answer.
pub fn scope(client_id: Option<&str>, sub: &str) -> String {
    let client = client_id.unwrap_or("");
    // Length-prefixed: no choice of client id and subject can collide with another.
    format!("{}:{client}{sub}", client.len())
}

/// What makes a repeat "the same request": method, path, the caller and the body's
/// bytes. SHA-256, hex; each part length-prefixed so no two requests share an input.
pub fn fingerprint(method: &str, path: &str, scope: &str, body: &[u8]) -> String {
    let body_digest = ring::digest::digest(&ring::digest::SHA256, body);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        method.as_bytes(),
        path.as_bytes(),
        scope.as_bytes(),
        body_digest.as_ref(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    hex::encode(ctx.finish())
}

/// A keyed write's claim on its key, written in the write's transaction: first the
/// claim (so a concurrent duplicate waits or sees it), then the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
    /// The status the write answers when it succeeds.
    pub status: u16,
    /// Unix seconds.
    pub created_at: i64,
    /// Keys created at or before this instant (unix seconds) have expired: they are
    /// purged and count as absent.
    pub expired_at_or_before: i64,
}

impl Claim {
    /// A claim made at `now` under a TTL of `ttl_seconds`.
    pub fn new(
        scope: String,
        key: String,
        fingerprint: String,
        status: u16,
        now: i64,
        ttl_seconds: i64,
    ) -> Self {
        Self {
            scope,
            key,
            fingerprint,
            status,
            created_at: now,
            expired_at_or_before: now.saturating_sub(ttl_seconds),
        }
    }
}

/// An answer as stored and replayed: the status and the body's exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    /// JSON text; empty for a body-less answer (204).
    pub body: String,
}

impl StoredAnswer {
    /// The answer of a link or unlink: the primary's identities.
    pub fn identities(status: u16, identities: &[Identity]) -> Self {
        let wire: Vec<_> = identities.iter().map(Identity::to_wire).collect();
        Self::json(status, &wire)
    }

    /// The answer of a user's create or update: the user.
    pub fn user(status: u16, user: &UserRecord) -> Self {
        Self::json(status, &user.to_wire())
    }

    /// An answer without a body.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: String::new(),
        }
    }

    /// `value` serialized exactly as the HTTP layer's JSON responses serialize it
    /// (`serde_json::to_string`), so a first answer and its replays are byte for byte
    /// the same.
    fn json(status: u16, value: &impl Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_string(value).unwrap_or_default(),
        }
    }
}

/// A key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub fingerprint: String,
    pub answer: StoredAnswer,
}

/// What a request carrying a key that is already stored gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// The same request: the first answer, without acting again.
    Replay(StoredAnswer),
    /// The same key with another request: 422.
    Mismatch,
    /// The first call has not finished (never seen once its transaction committed).
    InProgress,
}

/// How a repeat of `stored` with `fingerprint` is answered.
pub fn repeat(stored: StoredKey, fingerprint: &str) -> Repeat {
    if stored.fingerprint != fingerprint {
        Repeat::Mismatch
    } else if stored.answer.status == 0 {
        Repeat::InProgress
    } else {
        Repeat::Replay(stored.answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_up_to_255_characters() {
        assert_eq!(parse_key(b"abc-123"), Ok("abc-123".into()));
        assert_eq!(parse_key(b"\"abc-123\""), Ok("abc-123".into()));
        assert_eq!(parse_key(b"with space"), Ok("with space".into()));
        let longest = "k".repeat(255);
        assert_eq!(parse_key(longest.as_bytes()), Ok(longest.clone()));
        assert_eq!(
            parse_key(format!("{longest}k").as_bytes()),
            Err(KeyError::TooLong)
        );
        // The quotes of the Structured Field form do not count.
        assert!(parse_key(format!("\"{longest}\"").as_bytes()).is_ok());
        assert_eq!(parse_key(b""), Err(KeyError::Empty));
        assert_eq!(parse_key(b"\"\""), Err(KeyError::Empty));
        for bad in [&b"a\tb"[..], b"a\x01", b"\x7f", "é".as_bytes(), b"a\nb"] {
            assert_eq!(parse_key(bad), Err(KeyError::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn the_fingerprint_changes_with_every_part() {
        let base = fingerprint("POST", "/api/v2/users/u/identities", "s", b"{}");
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            fingerprint("POST", "/api/v2/users/u/identities", "s", b"{}")
        );
        for other in [
            fingerprint("DELETE", "/api/v2/users/u/identities", "s", b"{}"),
            fingerprint("POST", "/api/v2/users/v/identities", "s", b"{}"),
            fingerprint("POST", "/api/v2/users/u/identities", "t", b"{}"),
            fingerprint("POST", "/api/v2/users/u/identities", "s", b"{ }"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn scopes_of_different_callers_never_collide() {
        assert_ne!(scope(Some("ab"), "c"), scope(Some("a"), "bc"));
        assert_ne!(scope(None, "x"), scope(Some(""), "x").replace("0:", "1:"));
        assert_eq!(scope(Some("app"), "app@clients"), "3:appapp@clients");
    }

    #[test]
    fn repeats_replay_the_same_request_only() {
        let stored = StoredKey {
            fingerprint: "f".into(),
            answer: StoredAnswer::empty(204),
        };
        assert_eq!(
            repeat(stored.clone(), "f"),
            Repeat::Replay(StoredAnswer::empty(204))
        );
        assert_eq!(repeat(stored, "g"), Repeat::Mismatch);
        let unfinished = StoredKey {
            fingerprint: "f".into(),
            answer: StoredAnswer::empty(0),
        };
        assert_eq!(repeat(unfinished, "f"), Repeat::InProgress);
    }

    #[test]
    fn claims_expire_after_their_ttl() {
        let claim = Claim::new("s".into(), "k".into(), "f".into(), 201, 1_000_000, 86_400);
        assert_eq!(claim.expired_at_or_before, 1_000_000 - 86_400);
    }
}
