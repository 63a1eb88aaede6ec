//! `vapictl import`: a spec for what an owner already has.

use std::io::{self, Write};

use vapictl::secrets;

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::settings;

use super::connect;

pub(crate) async fn run(
    g: &GlobalArgs,
    owner: &str,
    recipients: &[String],
    adopt: bool,
) -> anyhow::Result<Exit> {
    let owner = uuid::Uuid::parse_str(owner).map_err(|_| {
        anyhow::anyhow!("`{owner}` is not a UUID\nhint: `--owner` takes the owner's users.id")
    })?;
    let identities = settings::identities(g)?;
    let parsed = if recipients.is_empty() {
        None
    } else {
        if identities.is_empty() {
            anyhow::bail!(
                "re-encrypting needs an age identity that can decrypt the stored tokens\nhint: pass `--identity FILE` or set `VAPICTL_AGE_IDENTITY`, or leave out `--recipient` to keep the stored ciphertexts"
            );
        }
        Some(secrets::parse_recipients(recipients)?)
    };
    let (store, vapi) = connect(g).await?;
    let observed = vapi.observe().await?;
    let numbers: Vec<String> = observed
        .numbers
        .iter()
        .filter_map(|o| o.number.clone())
        .collect();
    let vapi_ids: Vec<String> = observed.numbers.iter().map(|o| o.id.clone()).collect();
    let lookup = vapictl::store::Lookup {
        numbers: &numbers,
        vapi_ids: &vapi_ids,
        non_canonical: true,
        ..Default::default()
    };
    let recorded = store.load_recorded_for(owner, &lookup).await?;
    let tokens = match &parsed {
        Some(r) => vapictl::import::Tokens::ReEncrypt {
            identities: &identities,
            recipients: r,
        },
        None => vapictl::import::Tokens::Keep,
    };
    let imported = vapictl::import::import(owner, &recorded, &observed, &tokens, adopt)
        .map_err(|(number, e)| anyhow::anyhow!("`{number}`: {e}"))?;
    io::stdout().write_all(imported.yaml.as_bytes())?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    for o in &imported.out_of_scope {
        eprintln!("warning: left out (outside vapictl's scope): {o}");
    }
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
    if !imported.placeholders.is_empty() {
        eprintln!(
            "note: {} token(s) are placeholders to replace before applying: {}",
            imported.placeholders.len(),
            imported.placeholders.join(", ")
        );
    }
    eprintln!("Imported {} number(s) for owner {owner}.", imported.numbers);
    Ok(Exit::Ok)
}

/// `import --all --out-dir DIR`: one spec per owner that has rows, from one read of Vapi and the
/// database. Refuses before writing anything when a file exists already.
pub(crate) async fn run_all(
    g: &GlobalArgs,
    dir: &std::path::Path,
    recipients: &[String],
    adopt: bool,
) -> anyhow::Result<Exit> {
    if adopt {
        anyhow::bail!(
            "`--adopt` cannot be combined with `--all`: a number nobody manages has no owner to go to\nhint: import the owner that should take them over with `--owner UUID --adopt`"
        );
    }
    let identities = settings::identities(g)?;
    let parsed = if recipients.is_empty() {
        None
    } else {
        if identities.is_empty() {
            anyhow::bail!(
                "re-encrypting needs an age identity that can decrypt the stored tokens\nhint: pass `--identity FILE` or set `VAPICTL_AGE_IDENTITY`, or leave out `--recipient` to keep the stored ciphertexts"
            );
        }
        Some(secrets::parse_recipients(recipients)?)
    };
    let (store, vapi) = connect(g).await?;
    let observation = vapictl::run::observe(&store, &vapi).await?;
    let twilio_numbers: Vec<String> = observation
        .observed
        .numbers
        .iter()
        .filter_map(|o| o.number.clone())
        .collect();
    let vapi_ids: Vec<String> = observation
        .observed
        .numbers
        .iter()
        .map(|o| o.id.clone())
        .collect();
    // Each owner's claims as the single-owner import reads them.
    let lookup = vapictl::store::Lookup {
        numbers: &twilio_numbers,
        vapi_ids: &vapi_ids,
        non_canonical: true,
        ..Default::default()
    };
    let owners: Vec<uuid::Uuid> = observation
        .recorded
        .users_with_rows()
        .map(|(u, _)| u)
        .collect();
    let targets: Vec<(uuid::Uuid, std::path::PathBuf)> = owners
        .iter()
        .map(|o| (*o, dir.join(format!("{o}.yaml"))))
        .collect();
    let existing: Vec<String> = targets
        .iter()
        .filter(|(_, p)| p.exists())
        .map(|(_, p)| format!("`{}`", p.display()))
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
    let tokens = match &parsed {
        Some(r) => vapictl::import::Tokens::ReEncrypt {
            identities: &identities,
            recipients: r,
        },
        None => vapictl::import::Tokens::Keep,
    };
    let mut numbers = 0;
    for (owner, path) in &targets {
        let recorded = observation.recorded.for_owner(*owner, &lookup);
        let imported =
            vapictl::import::import(*owner, &recorded, &observation.observed, &tokens, false)
                .map_err(|(number, e)| anyhow::anyhow!("owner `{owner}`, `{number}`: {e}"))?;
        // `create_new`: a file that appeared since the check above is not overwritten either.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
        file.write_all(imported.yaml.as_bytes())?;
        for w in &imported.warnings {
            eprintln!("warning: owner {owner}: {w}");
        }
        for o in &imported.out_of_scope {
            eprintln!("warning: owner {owner}: left out (outside vapictl's scope): {o}");
        }
        if !imported.placeholders.is_empty() {
            eprintln!(
                "note: owner {owner}: {} token(s) are placeholders to replace before applying: {}",
                imported.placeholders.len(),
                imported.placeholders.join(", ")
            );
        }
        numbers += imported.numbers;
    }
    let unmanaged = observation.unmanaged(&[]);
    if !unmanaged.is_empty() {
        eprintln!(
            "{} number(s) in Vapi are managed by no one (not imported; `import --owner UUID --adopt` takes them over)",
            unmanaged.len()
        );
    }
    eprintln!(
        "Imported {numbers} number(s) of {} owner(s) into {}.",
        targets.len(),
        dir.display()
    );
    Ok(Exit::Ok)
}
