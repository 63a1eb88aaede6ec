//! Secret values and age encryption: the spec's tokens are age ciphertext, decrypted only in memory.

use std::fmt;

/// A decrypted secret. It cannot be printed, logged or serialized by accident: `Debug` and
/// `Display` show `(sensitive)`, and there is no `Serialize`. Use [`SecretValue::expose`] at the
/// one place the plaintext must leave the process (the Vapi request body).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(s: impl Into<String>) -> Self {
        SecretValue(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(sensitive)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}
