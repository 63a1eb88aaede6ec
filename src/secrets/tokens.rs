//! A spec's Twilio tokens as validation reads them: the checks on a token's form (age armor, not
//! plaintext, not `import`'s placeholder, long enough once decrypted) and a cache that decrypts
//! each distinct ciphertext once.

use std::collections::HashMap;

use super::{Identities, SecretValue, looks_armored};

/// Marks a token `vapictl import` could not fill in; validation refuses it by name.
pub const TOKEN_PLACEHOLDER: &str = "REPLACE-ME-encrypt-the-twilio-auth-token";

/// The shortest Twilio auth token accepted (Twilio's are 32 hex characters).
const MIN_TOKEN_LEN: usize = 32;

/// Whether tokens must be decrypted (apply) or may stay ciphertext (keyless plan and drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMode {
    /// Every token must decrypt with the identities given.
    Required,
    /// Without identities, tokens are compared as ciphertext; with identities they must decrypt.
    Optional,
}

/// Why a spec's token cannot be used. `Display` is the message; [`TokenError::hint`] says what to
/// do. Neither ever holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("authToken is a placeholder left by `vapictl import`")]
    Placeholder,
    #[error("authToken is not age-encrypted; plaintext tokens are refused")]
    Plaintext,
    #[error("the decrypted authToken is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort,
    /// The ciphertext could not be decrypted: the [`super::SecretsError`]'s message and hint.
    #[error("{message}")]
    Undecryptable { message: String, hint: String },
}

impl TokenError {
    pub fn hint(&self) -> &str {
        match self {
            TokenError::Placeholder => {
                "encrypt this number's Twilio auth token with `printf '%s' \"$TOKEN\" | vapictl encrypt -r age1…` and paste the block here"
            }
            TokenError::Plaintext => {
                "encrypt it with `vapictl encrypt --recipient age1…` and paste the armored block (the plaintext must not stay in git history)"
            }
            TokenError::TooShort => {
                "paste the full auth token from the Twilio console, then encrypt it again"
            }
            TokenError::Undecryptable { hint, .. } => hint,
        }
    }
}

/// Decrypts each distinct ciphertext once (10,000 numbers often share one token).
pub struct TokenCache<'a> {
    identities: &'a Identities,
    mode: SecretMode,
    done: HashMap<String, Result<Option<SecretValue>, TokenError>>,
}

impl<'a> TokenCache<'a> {
    pub fn new(identities: &'a Identities, mode: SecretMode) -> Self {
        TokenCache {
            identities,
            mode,
            done: HashMap::new(),
        }
    }

    /// The plaintext of an armored token; `None` when it may stay ciphertext
    /// ([`SecretMode::Optional`] without identities).
    ///
    /// # Errors
    /// The token is `import`'s placeholder, plaintext, undecryptable, or too short.
    pub fn get(&mut self, armored: &str) -> Result<Option<SecretValue>, TokenError> {
        if let Some(r) = self.done.get(armored) {
            return r.clone();
        }
        let r = self.decrypt(armored);
        self.done.insert(armored.to_string(), r.clone());
        r
    }

    /// Decrypts a secret other than a token (a header value): no placeholder or length rules.
    ///
    /// # Errors
    /// The ciphertext cannot be decrypted with the identities given.
    pub fn secret(&mut self, armored: &str) -> Result<Option<SecretValue>, TokenError> {
        if self.identities.is_empty() && self.mode == SecretMode::Optional {
            return Ok(None);
        }
        self.identities.decrypt(armored).map(Some).map_err(|e| {
            let text = e.to_string();
            let (message, hint) = text.split_once("\nhint: ").unwrap_or((&text, ""));
            TokenError::Undecryptable {
                message: message.to_string(),
                hint: hint.to_string(),
            }
        })
    }

    fn decrypt(&self, armored: &str) -> Result<Option<SecretValue>, TokenError> {
        if armored.trim().starts_with(TOKEN_PLACEHOLDER) {
            return Err(TokenError::Placeholder);
        }
        if !looks_armored(armored) {
            return Err(TokenError::Plaintext);
        }
        if self.identities.is_empty() && self.mode == SecretMode::Optional {
            return Ok(None);
        }
        match self.identities.decrypt(armored) {
            Ok(secret) if secret.expose().chars().count() < MIN_TOKEN_LEN => {
                Err(TokenError::TooShort)
            }
            Ok(secret) => Ok(Some(secret)),
            Err(e) => {
                let text = e.to_string();
                let (message, hint) = text.split_once("\nhint: ").unwrap_or((&text, ""));
                Err(TokenError::Undecryptable {
                    message: message.to_string(),
                    hint: hint.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{encrypt, parse_recipients};

    fn identity() -> (Identities, String) {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let mut identities = Identities::none();
        identities
            .add_text("test", &SecretValue::new(id.to_string().expose_secret()))
            .unwrap();
        (identities, id.to_public().to_string())
    }

    #[test]
    fn the_import_placeholder_is_refused_by_name_with_the_encrypt_hint() {
        let ids = Identities::none();
        let mut cache = TokenCache::new(&ids, SecretMode::Optional);
        let err = cache.get(&format!("{TOKEN_PLACEHOLDER}\n")).unwrap_err();
        assert_eq!(err, TokenError::Placeholder);
        assert!(err.to_string().contains("vapictl import"));
        assert!(err.hint().contains("vapictl encrypt"));
    }

    #[test]
    fn keyless_optional_mode_keeps_the_ciphertext_and_required_mode_names_the_missing_key() {
        let (_, recipient) = identity();
        let armored = encrypt(
            &parse_recipients(&[recipient]).unwrap(),
            &SecretValue::new("t".repeat(32)),
        )
        .unwrap();
        let none = Identities::none();
        assert_eq!(
            TokenCache::new(&none, SecretMode::Optional).get(&armored),
            Ok(None)
        );
        let err = TokenCache::new(&none, SecretMode::Required)
            .get(&armored)
            .unwrap_err();
        assert!(err.to_string().contains("no age identity"), "{err}");
        assert!(err.hint().contains("--identity"), "{}", err.hint());
    }

    #[test]
    fn a_ciphertext_seen_twice_gives_the_same_answer() {
        let (ids, recipient) = identity();
        let recipients = parse_recipients(&[recipient]).unwrap();
        let good = encrypt(&recipients, &SecretValue::new("g".repeat(32))).unwrap();
        let short = encrypt(&recipients, &SecretValue::new("short")).unwrap();
        let mut cache = TokenCache::new(&ids, SecretMode::Required);
        for _ in 0..2 {
            assert_eq!(cache.get(&good).unwrap().unwrap().expose(), "g".repeat(32));
            assert_eq!(cache.get(&short), Err(TokenError::TooShort));
        }
        assert_eq!(cache.done.len(), 2, "each ciphertext decrypted once");
    }
}
