//! `vapictl encrypt`: a secret from stdin, as armored age ciphertext for the spec.

use std::io::{self, Read, Write};

use anyhow::Context;
use vapictl::secrets::{self, SecretValue};

use crate::Exit;

pub(crate) fn run(recipients: &[String]) -> anyhow::Result<Exit> {
    let recipients = secrets::parse_recipients(recipients)?;
    let mut input = String::new();
    io::stdin()
        .read_to_string(&mut input)
        .context("reading the secret from stdin")?;
    // A trailing newline from `echo` or a here-string is not part of the token.
    let secret = SecretValue::new(secrets::without_trailing_newlines(&input));
    zeroize::Zeroize::zeroize(&mut input);
    if secret.expose().is_empty() {
        anyhow::bail!(
            "nothing to encrypt: stdin was empty\nhint: printf '%s' \"$TOKEN\" | vapictl encrypt --recipient age1…"
        );
    }
    let armored = secrets::encrypt(&recipients, &secret)?;
    // Exactly what `age -a` prints, so `age -d` reads it too; paste it under `authToken: |`.
    io::stdout().write_all(armored.as_bytes())?;
    Ok(Exit::Ok)
}
