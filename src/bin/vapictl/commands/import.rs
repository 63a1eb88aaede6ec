//! `vapictl import`: a spec for what an owner (or every owner) already has.

use std::io::{self, Write};
use std::path::Path;

use vapictl::import::{Imported, Tokens};
use vapictl::secrets::{self, Identities};

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::settings;

use super::connect;

/// The identities and the parsed `--recipient`s: re-encrypting needs an identity.
fn keys(
    g: &GlobalArgs,
    recipients: &[String],
) -> anyhow::Result<(Identities, Option<Vec<age::x25519::Recipient>>)> {
    let identities = settings::identities(g)?;
    if recipients.is_empty() {
        return Ok((identities, None));
    }
    if identities.is_empty() {
        anyhow::bail!(
            "re-encrypting needs an age identity that can decrypt the stored tokens\nhint: pass `--identity FILE` or set `VAPICTL_AGE_IDENTITY`, or leave out `--recipient` to keep the stored ciphertexts"
        );
    }
    Ok((identities, Some(secrets::parse_recipients(recipients)?)))
}

/// What the user should know about one owner's import, on stderr (`prefix` names the owner in a
/// run over all of them).
fn report(imported: &Imported, prefix: &str) {
    for w in &imported.warnings {
        eprintln!("warning: {prefix}{w}");
    }
    for o in &imported.out_of_scope {
        eprintln!("warning: {prefix}left out (outside vapictl's scope): {o}");
    }
    if !imported.placeholders.is_empty() {
        eprintln!(
            "note: {prefix}{} token(s) are placeholders to replace before applying: {}",
            imported.placeholders.len(),
            imported.placeholders.join(", ")
        );
    }
}

pub(crate) async fn run(
    g: &GlobalArgs,
    owner: &str,
    recipients: &[String],
    adopt: bool,
) -> anyhow::Result<Exit> {
    let owner = uuid::Uuid::parse_str(owner).map_err(|_| {
        anyhow::anyhow!("`{owner}` is not a UUID\nhint: `--owner` takes the owner's users.id")
    })?;
    let (identities, parsed) = keys(g, recipients)?;
    let tokens = Tokens::new(&identities, parsed.as_deref());
    let (store, vapi) = connect(g).await?;
    let imported = vapictl::run::import_owner(&store, &vapi, owner, &tokens, adopt).await?;
    io::stdout().write_all(imported.yaml.as_bytes())?;
    report(&imported, "");
    if !imported.unmanaged.is_empty() {
        eprintln!(
            "{} Twilio number(s) in Vapi are managed by no one{}: {}",
            imported.unmanaged.len(),
            if adopt {
                " (included)"
            } else {
                " (add `--adopt` to include them)"
            },
            imported.unmanaged.join(", ")
        );
    }
    eprintln!("Imported {} number(s) for owner {owner}.", imported.numbers);
    Ok(Exit::Ok)
}

/// `import --all --out-dir DIR`: one spec per owner that has rows, from one read of Vapi and the
/// database. Refuses before writing anything when a file exists already.
pub(crate) async fn run_all(
    g: &GlobalArgs,
    dir: &Path,
    recipients: &[String],
    adopt: bool,
) -> anyhow::Result<Exit> {
    if adopt {
        anyhow::bail!(
            "`--adopt` cannot be combined with `--all`: a number nobody manages has no owner to go to\nhint: import the owner that should take them over with `--owner UUID --adopt`"
        );
    }
    let (identities, parsed) = keys(g, recipients)?;
    let tokens = Tokens::new(&identities, parsed.as_deref());
    let (store, vapi) = connect(g).await?;
    let all = vapictl::run::import_all(&store, &vapi, &tokens).await?;
    let target = |owner: &uuid::Uuid| dir.join(format!("{owner}.yaml"));
    let existing: Vec<String> = all
        .owners
        .iter()
        .map(|(o, _)| target(o))
        .filter(|p| p.exists())
        .map(|p| format!("`{}`", p.display()))
        .collect();
    if !existing.is_empty() {
        anyhow::bail!(
            "refusing to overwrite {} existing file(s): {}\nhint: import into an empty directory, or move the files away first",
            existing.len(),
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
    let mut numbers = 0;
    for (owner, imported) in &all.owners {
        let path = target(owner);
        // `create_new`: a file that appeared since the check above is not overwritten either.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
        file.write_all(imported.yaml.as_bytes())?;
        report(imported, &format!("owner {owner}: "));
        numbers += imported.numbers;
    }
    if all.unmanaged > 0 {
        eprintln!(
            "{} number(s) in Vapi are managed by no one (not imported; `import --owner UUID --adopt` takes them over)",
            all.unmanaged
        );
    }
    eprintln!(
        "Imported {numbers} number(s) of {} owner(s) into {}.",
        all.owners.len(),
        dir.display()
    );
    Ok(Exit::Ok)
}
