//! `vapictl validate`: check a spec without touching the database or Vapi.

use std::io::Write;
use std::path::PathBuf;

use vapictl::pipeline;
use vapictl::run;
use vapictl::validate::SecretMode;

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::settings;

pub(crate) fn run(g: &GlobalArgs, paths: &[PathBuf]) -> anyhow::Result<Exit> {
    if run::specs::is_fleet(paths) {
        return run_many(g, paths);
    }
    let path = &paths[0];
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

/// Several specs: every file checked on its own, every problem printed, conflicts between
/// files refused.
fn run_many(g: &GlobalArgs, paths: &[PathBuf]) -> anyhow::Result<Exit> {
    let identities = settings::identities(g)?;
    let files = run::specs::expand(paths)?;
    let loaded = run::specs::load(&files, &identities, SecretMode::Optional)?;
    let mut out = std::io::stdout().lock();
    for o in &loaded.owners {
        let n = o.desired.numbers.len();
        writeln!(
            out,
            "{}: valid ({n} number{})",
            o.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
    }
    out.flush()?;
    for f in &loaded.failed {
        eprintln!("error: {}", f.error);
    }
    eprintln!(
        "{} spec(s): {} valid, {} invalid.",
        files.len(),
        loaded.owners.len(),
        loaded.failed.len()
    );
    if identities.is_empty() {
        eprintln!(
            "note: no age identity given, so tokens were not decrypted and their length was not checked"
        );
    }
    Ok(if loaded.failed.is_empty() {
        Exit::Ok
    } else {
        Exit::Error
    })
}
