//! `vapictl history`: the audit trail, newest first.

use std::io::{self, Write};
use std::path::Path;

use vapictl::spec;
use vapictl::store::{Store, StoreOptions};

use crate::Exit;
use crate::cli::GlobalArgs;

pub(crate) async fn run(
    g: &GlobalArgs,
    number: Option<&str>,
    owner: Option<&str>,
    spec: Option<&Path>,
    limit: u32,
) -> anyhow::Result<Exit> {
    let owner = match (owner, spec) {
        (Some(o), _) => uuid::Uuid::parse_str(o).map_err(|_| {
            anyhow::anyhow!("`{o}` is not a UUID\nhint: `--owner` takes the owner's users.id")
        })?,
        (None, Some(path)) => spec::load_file(path)?.spec.owner.parse().map_err(|_| {
            anyhow::anyhow!("the spec's owner is not a UUID; run `vapictl validate`")
        })?,
        (None, None) => anyhow::bail!("give `--owner UUID` or `--spec FILE`"),
    };
    let store = Store::connect(&g.database_url, &StoreOptions::default()).await?;
    let records = store.history(owner, number, limit).await?;
    let mut out = io::stdout().lock();
    if records.is_empty() {
        writeln!(out, "No recorded changes for owner {owner}.")?;
    }
    for r in &records {
        writeln!(
            out,
            "{}  {:<10} {:<8} {:<10} {}{}",
            r.at.format("%Y-%m-%d %H:%M:%S"),
            r.action,
            r.number_masked,
            r.outcome,
            r.fields.join(","),
            r.error
                .as_deref()
                .map(|e| format!("  ({})", e.lines().next().unwrap_or_default()))
                .unwrap_or_default()
        )?;
        let mut meta = format!("    run {}", r.run_id);
        if let Some(ci) = &r.ci_run_id {
            meta.push_str(&format!(" ci {ci}"));
        }
        if let Some(sha) = &r.commit_sha {
            meta.push_str(&format!(" commit {sha}"));
        }
        if let Some(id) = &r.vapi_phone_id {
            meta.push_str(&format!(" vapi {id}"));
        }
        writeln!(out, "{meta}")?;
    }
    Ok(Exit::Ok)
}
