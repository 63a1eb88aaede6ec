//! Secret values and age encryption: the spec's tokens are age ciphertext, decrypted only in memory.

use std::fmt;

mod tokens;

pub(crate) use tokens::TokenCache;
pub use tokens::{SecretMode, TOKEN_PLACEHOLDER};

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

impl Drop for SecretValue {
    fn drop(&mut self) {
        // Overwrite the plaintext before the allocation is freed.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// What can go wrong with identities, recipients and ciphertexts.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "cannot read age identity file `{path}`: {source}\nhint: pass a file made by `age-keygen` with `--identity FILE`"
    )]
    IdentityFileUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{origin}` holds no usable age identity ({reason})\nhint: it must contain a line starting with `AGE-SECRET-KEY-1`, as `age-keygen` writes"
    )]
    IdentityInvalid { origin: String, reason: String },
    #[error(
        "`{recipient}` is not an age recipient\nhint: recipients look like `age1…`; `age-keygen -y KEYFILE` prints yours"
    )]
    InvalidRecipient { recipient: String },
    #[error("no recipient given\nhint: pass `--recipient age1…` (repeatable)")]
    NoRecipients,
    #[error(
        "the value is not ASCII-armored age ciphertext\nhint: paste the whole block that `vapictl encrypt` or `age -a` prints, from `-----BEGIN AGE ENCRYPTED FILE-----` to `-----END AGE ENCRYPTED FILE-----`"
    )]
    NotArmored,
    #[error(
        "the age ciphertext is damaged or truncated ({reason})\nhint: re-encrypt the secret with `vapictl encrypt --recipient age1…` and paste the complete block"
    )]
    Malformed { reason: String },
    #[error(
        "none of the age identities can decrypt this value\nhint: it was encrypted to other recipients; use the matching identity or re-encrypt with `vapictl encrypt`"
    )]
    NoMatchingIdentity,
    #[error(
        "no age identity to decrypt with\nhint: pass `--identity FILE`, or set `VAPICTL_AGE_IDENTITY_FILE` or `VAPICTL_AGE_IDENTITY`"
    )]
    NoIdentity,
    #[error("the decrypted value is not UTF-8 text")]
    NotUtf8,
    #[error("encryption failed: {reason}")]
    Encrypt { reason: String },
}

/// The age identities available to this run (from files and the environment).
#[derive(Default)]
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} keys, sensitive)", self.keys.len())
    }
}

impl Identities {
    /// No identity: keyless mode (plans compare ciphertexts only).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads an identity file as `age-keygen` writes it (comments allowed, several keys allowed).
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<(), SecretsError> {
        let bytes = std::fs::read(path).map_err(|source| SecretsError::IdentityFileUnreadable {
            path: path.display().to_string(),
            source,
        })?;
        self.add_text(
            &path.display().to_string(),
            &SecretValue::new(String::from_utf8_lossy(&bytes)),
        )
    }

    /// Adds identities from key text (`VAPICTL_AGE_IDENTITY`, as CI secrets usually arrive).
    pub fn add_text(&mut self, origin: &str, text: &SecretValue) -> Result<(), SecretsError> {
        let invalid = |reason: String| SecretsError::IdentityInvalid {
            origin: origin.to_string(),
            reason,
        };
        // `IdentityFile` echoes nothing of the key in its errors, but we still keep only the kind.
        let file = age::IdentityFile::from_buffer(text.expose().trim().as_bytes())
            .map_err(|e| invalid(format!("{:?}", e.kind())))?;
        let keys = file
            .into_identities()
            .map_err(|_| invalid("unsupported identity type".into()))?;
        if keys.is_empty() {
            return Err(invalid("no key found".into()));
        }
        self.keys.extend(keys);
        Ok(())
    }

    /// Decrypts one armored value (a spec's `authToken`, or a row's `twilio_auth_token`), with
    /// trailing line endings removed ([`without_trailing_newlines`]).
    ///
    /// # Errors
    /// [`SecretsError::NoIdentity`] when there is no identity at all, [`SecretsError::NotArmored`]
    /// / [`SecretsError::Malformed`] for damaged input, [`SecretsError::NoMatchingIdentity`] when
    /// the value was encrypted to someone else.
    pub fn decrypt(&self, armored: &str) -> Result<SecretValue, SecretsError> {
        use std::io::Read;
        check_armor_shape(armored)?;
        if self.keys.is_empty() {
            return Err(SecretsError::NoIdentity);
        }
        let reader = age::armor::ArmoredReader::new(armored.trim().as_bytes());
        let decryptor = age::Decryptor::new_buffered(reader).map_err(map_decrypt_error)?;
        let mut out = Vec::new();
        decryptor
            .decrypt(self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
            .map_err(map_decrypt_error)?
            .read_to_end(&mut out)
            .map_err(|e| SecretsError::Malformed {
                reason: e.kind().to_string(),
            })?;
        let mut text = String::from_utf8(out).map_err(|e| {
            zeroize::Zeroize::zeroize(&mut e.into_bytes());
            SecretsError::NotUtf8
        })?;
        // The one normalization of decrypted secrets, so that the diff, the digest and the value
        // sent to Vapi all see the same token (issue 9, defect 4).
        let kept = without_trailing_newlines(&text).len();
        text.truncate(kept);
        Ok(SecretValue(text))
    }
}

fn map_decrypt_error(e: age::DecryptError) -> SecretsError {
    match e {
        age::DecryptError::NoMatchingKeys => SecretsError::NoMatchingIdentity,
        age::DecryptError::Io(io) => SecretsError::Malformed {
            reason: io.to_string(),
        },
        other => SecretsError::Malformed {
            reason: other.to_string(),
        },
    }
}

/// A secret without the line ending that `echo`, here-strings and editors append: every trailing
/// `\n` and `\r` is dropped. `age` encrypts bytes as given, so `echo "$T" | age -a -r …` holds
/// the token plus `\n` (`\r\n` on Windows); no Twilio token ends in either. Applied to every
/// decrypted value ([`Identities::decrypt`]) and to `vapictl encrypt`'s input.
pub fn without_trailing_newlines(secret: &str) -> &str {
    secret.trim_end_matches(['\n', '\r'])
}

const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";

/// True when the text is shaped like `age -a` output (begin line … end line).
pub(crate) fn looks_armored(s: &str) -> bool {
    s.trim_start().starts_with(ARMOR_BEGIN)
}

fn check_armor_shape(s: &str) -> Result<(), SecretsError> {
    let t = s.trim();
    if !t.starts_with(ARMOR_BEGIN) {
        return Err(SecretsError::NotArmored);
    }
    if !t.ends_with(ARMOR_END) {
        return Err(SecretsError::Malformed {
            reason: "the `-----END AGE ENCRYPTED FILE-----` line is missing".into(),
        });
    }
    Ok(())
}

/// Parses `age1…` recipients.
pub fn parse_recipients(
    recipients: &[String],
) -> Result<Vec<age::x25519::Recipient>, SecretsError> {
    if recipients.is_empty() {
        return Err(SecretsError::NoRecipients);
    }
    recipients
        .iter()
        .map(|r| {
            r.trim()
                .parse::<age::x25519::Recipient>()
                .map_err(|_| SecretsError::InvalidRecipient {
                    recipient: r.clone(),
                })
        })
        .collect()
}

/// Encrypts a secret to the recipients; returns the ASCII armor `age -a` would print.
pub fn encrypt(
    recipients: &[age::x25519::Recipient],
    secret: &SecretValue,
) -> Result<String, SecretsError> {
    use std::io::Write;
    let err = |e: &dyn fmt::Display| SecretsError::Encrypt {
        reason: e.to_string(),
    };
    if recipients.is_empty() {
        return Err(SecretsError::NoRecipients);
    }
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| err(&e))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| err(&e))?;
    writer
        .write_all(secret.expose().as_bytes())
        .map_err(|e| err(&e))?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| err(&e))?;
    String::from_utf8(out).map_err(|e| err(&e))
}

/// A salted SHA-256 of a secret (`sha256:<salt>:<hash>`), stored in the database so a later run
/// can tell whether the token in the spec was rotated without keeping or showing either value.
pub fn token_digest(secret: &SecretValue) -> String {
    let salt: [u8; 16] = rand::random();
    digest_with_salt(&salt, secret)
}

fn digest_with_salt(salt: &[u8], secret: &SecretValue) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(salt);
    h.update(secret.expose().as_bytes());
    format!("sha256:{}:{}", hex::encode(salt), hex::encode(h.finalize()))
}

/// Whether `digest` (from [`token_digest`]) was made from `secret`.
pub(crate) fn digest_matches(digest: &str, secret: &SecretValue) -> bool {
    let mut parts = digest.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sha256"), Some(salt), Some(_)) => match hex::decode(salt) {
            Ok(salt) => digest_with_salt(&salt, secret) == digest,
            Err(_) => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair() -> (String, String) {
        let id = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        (
            id.to_string().expose_secret().to_string(),
            id.to_public().to_string(),
        )
    }

    #[test]
    fn secret_value_never_prints() {
        let s = SecretValue::new("hunter2-canary");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
    }

    #[test]
    fn encrypt_then_decrypt_round_trips() {
        let (key, recipient) = keypair();
        let armored = encrypt(
            &parse_recipients(&[recipient]).unwrap(),
            &SecretValue::new("tok"),
        )
        .unwrap();
        assert!(looks_armored(&armored));
        let mut ids = Identities::none();
        ids.add_text("test", &SecretValue::new(key)).unwrap();
        assert_eq!(ids.decrypt(&armored).unwrap().expose(), "tok");
    }

    #[test]
    fn decrypted_values_lose_the_line_ending_that_echo_adds() {
        let (key, recipient) = keypair();
        let mut ids = Identities::none();
        ids.add_text("test", &SecretValue::new(key)).unwrap();
        let recipients = parse_recipients(&[recipient]).unwrap();
        for (written, read) in [
            ("tok\n", "tok"),
            ("tok\r\n", "tok"),
            ("tok\n\n", "tok"),
            ("tok", "tok"),
            ("to k\t", "to k\t"),
        ] {
            let armored = encrypt(&recipients, &SecretValue::new(written)).unwrap();
            assert_eq!(ids.decrypt(&armored).unwrap().expose(), read, "{written:?}");
        }
    }

    #[test]
    fn wrong_identity_is_named() {
        let (_, recipient) = keypair();
        let (other_key, _) = keypair();
        let armored = encrypt(
            &parse_recipients(&[recipient]).unwrap(),
            &SecretValue::new("tok"),
        )
        .unwrap();
        let mut ids = Identities::none();
        ids.add_text("test", &SecretValue::new(other_key)).unwrap();
        assert!(matches!(
            ids.decrypt(&armored),
            Err(SecretsError::NoMatchingIdentity)
        ));
    }

    #[test]
    fn truncated_armor_is_malformed() {
        let (key, recipient) = keypair();
        let armored = encrypt(
            &parse_recipients(&[recipient]).unwrap(),
            &SecretValue::new("tok"),
        )
        .unwrap();
        let cut = &armored[..armored.len() / 2];
        let mut ids = Identities::none();
        ids.add_text("test", &SecretValue::new(key)).unwrap();
        assert!(matches!(
            ids.decrypt(cut),
            Err(SecretsError::Malformed { .. })
        ));
        assert!(matches!(
            ids.decrypt("plain"),
            Err(SecretsError::NotArmored)
        ));
    }

    #[test]
    fn digest_tells_rotation_without_the_value() {
        let a = SecretValue::new("a".repeat(32));
        let b = SecretValue::new("b".repeat(32));
        let d = token_digest(&a);
        assert!(!d.contains(&"a".repeat(32)));
        assert!(digest_matches(&d, &a));
        assert!(!digest_matches(&d, &b));
        assert_ne!(
            token_digest(&a),
            d,
            "salted: two digests of one value differ"
        );
    }

    #[test]
    fn bad_recipient_is_named() {
        let err = parse_recipients(&["age1nope".into()]).unwrap_err();
        assert!(err.to_string().contains("age1nope"));
    }

    #[test]
    fn identity_text_that_is_not_a_key_is_refused() {
        let mut ids = Identities::none();
        assert!(ids.add_text("env", &SecretValue::new("garbage")).is_err());
    }
}
