//! `vapictl validate`: check a spec without touching the database or Vapi.

use std::path::Path;

use vapictl::pipeline;
use vapictl::validate::SecretMode;

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::settings;

pub(crate) fn run(g: &GlobalArgs, path: &Path) -> anyhow::Result<Exit> {
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(path, &identities, SecretMode::Optional)?;
    let n = desired.numbers.len();
    println!(
        "{}: valid ({n} number{})",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    if identities.is_empty() {
        eprintln!(
            "note: no age identity given, so tokens were not decrypted and their length was not checked"
        );
    }
    Ok(Exit::Ok)
}
