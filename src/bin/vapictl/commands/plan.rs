//! `vapictl plan` and `vapictl drift`: what applying would change, never changing anything.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;
use vapictl::pipeline;
use vapictl::render::{
    GITHUB_COMMENT_LIMIT, Style, render_drift_text, render_plan_json, render_plan_markdown,
    render_plan_text,
};
use vapictl::safety::DeleteThreshold;
use vapictl::saved::SavedPlan;
use vapictl::validate::SecretMode;

use super::connect;
use crate::Exit;
use crate::cli::{Format, GlobalArgs};
use crate::settings;

pub(crate) async fn plan(
    g: &GlobalArgs,
    path: &Path,
    detailed: bool,
    format: Format,
    save_to: Option<&Path>,
) -> anyhow::Result<Exit> {
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(path, &identities, SecretMode::Optional)?;
    let (store, vapi) = connect(g).await?;
    let plan = pipeline::plan(&store, &vapi, &desired, &identities).await?;
    let style = Style {
        color: settings::stdout_color(g),
    };
    let mut out = io::stdout().lock();
    match format {
        Format::Text => render_plan_text(&plan, &style, &mut out)?,
        Format::Markdown => render_plan_markdown(&plan, GITHUB_COMMENT_LIMIT, &mut out)?,
        Format::Json => render_plan_json(&plan, &mut out)?,
    }
    out.flush()?;
    if let Some(file) = save_to {
        // Absolute, so that `apply FILE` finds the spec from any directory.
        let spec_path = std::path::absolute(path)
            .with_context(|| format!("resolving the path of `{}`", path.display()))?;
        let saved = SavedPlan::new(&plan, &spec_path.to_string_lossy(), uuid::Uuid::new_v4());
        let mut json = serde_json::to_vec_pretty(&saved)?;
        json.push(b'\n');
        std::fs::write(file, json)
            .with_context(|| format!("writing the plan to `{}`", file.display()))?;
        eprintln!(
            "Saved the plan to {}; apply exactly it with `vapictl apply {}`.",
            file.display(),
            file.display()
        );
    }
    if let Err(refusal) = DeleteThreshold::default().check(&plan, None) {
        let text = refusal.to_string();
        eprintln!("note: apply will refuse this plan: {text}");
    }
    Ok(if detailed && !plan.is_empty() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

pub(crate) async fn drift(g: &GlobalArgs, path: &Path, format: Format) -> anyhow::Result<Exit> {
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(path, &identities, SecretMode::Optional)?;
    let (store, vapi) = connect(g).await?;
    let plan = pipeline::plan(&store, &vapi, &desired, &identities).await?;
    let mut out = io::stdout().lock();
    match format {
        Format::Text => {
            let style = Style {
                color: settings::stdout_color(g),
            };
            render_drift_text(&plan, &style, &mut out)?
        }
        Format::Markdown => render_plan_markdown(&plan, GITHUB_COMMENT_LIMIT, &mut out)?,
        Format::Json => render_plan_json(&plan, &mut out)?,
    }
    out.flush()?;
    Ok(if plan.is_empty() {
        Exit::Ok
    } else {
        Exit::Changes
    })
}
