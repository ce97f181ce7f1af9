//! A string that never shows up in logs.

use std::fmt;

/// A secret string (an access token or a client secret) whose `Debug` and `Display`
/// print `[REDACTED]`.
///
/// Read the value with [`expose_secret`](Self::expose_secret), only where it is sent.
///
/// ```
/// use idlink_client::SecretString;
///
/// let secret = SecretString::from("s3cr3t");
/// assert_eq!(format!("{secret:?}"), "SecretString([REDACTED])");
/// assert_eq!(secret.expose_secret(), "s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    ///
    /// ```
    /// let s = idlink_client::SecretString::new("token".to_string());
    /// assert_eq!(s.expose_secret(), "token");
    /// ```
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself. Call this only where the value is sent, never to log it.
    ///
    /// ```
    /// let s = idlink_client::SecretString::from("token");
    /// assert_eq!(s.expose_secret().len(), 5);
    /// ```
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([REDACTED])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}
