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
        assistant_refs: &[],
        non_canonical: true,
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
