//! `vapictl plan` and `vapictl drift`: what applying would change, never changing anything.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use vapictl::pipeline;
use vapictl::plan::Plan;
use vapictl::render::{
    RunKind, Style, render_drift_text, render_plan_json, render_plan_markdown, render_plan_text,
    render_run_json, render_run_markdown, render_run_text,
};
use vapictl::run::{self, SavedRun};
use vapictl::safety::DeleteThreshold;
use vapictl::saved::SavedPlan;
use vapictl::validate::SecretMode;

use super::connect;
use crate::Exit;
use crate::cli::{Format, GlobalArgs};
use crate::settings;

pub(crate) struct PlanArgs<'a> {
    pub(crate) detailed: bool,
    pub(crate) format: Format,
    pub(crate) save_to: Option<&'a Path>,
    pub(crate) comment_limit: usize,
}

pub(crate) async fn plan(
    g: &GlobalArgs,
    paths: &[PathBuf],
    args: &PlanArgs<'_>,
) -> anyhow::Result<Exit> {
    if !run::specs::is_fleet(paths) {
        return plan_one(g, &paths[0], args).await;
    }
    let fleet = observe_fleet(g, paths, RunKind::Plan).await?;
    let view = fleet.view(RunKind::Plan);
    let style = Style {
        color: settings::stdout_color(g),
    };
    {
        let mut out = io::stdout().lock();
        match args.format {
            Format::Text => render_run_text(&view, &style, &mut out)?,
            Format::Markdown => render_run_markdown(&view, args.comment_limit, &mut out)?,
            Format::Json => render_run_json(&view, &mut out)?,
        }
        out.flush()?;
    }
    if let Some(file) = args.save_to {
        let plans: Vec<(String, &Plan)> = fleet
            .planned
            .iter()
            .filter_map(|(o, p)| p.as_ref().ok().map(|p| (o.path.display().to_string(), p)))
            .collect();
        let refs: Vec<(&str, &Plan)> = plans.iter().map(|(s, p)| (s.as_str(), *p)).collect();
        let saved = SavedRun::new(&refs, uuid::Uuid::new_v4());
        let mut json = serde_json::to_vec_pretty(&saved)?;
        json.push(b'\n');
        std::fs::write(file, json)
            .with_context(|| format!("writing the plan to `{}`", file.display()))?;
        eprintln!(
            "Saved the plan of {} owner(s) to {}; apply exactly it with `vapictl apply {}`.",
            saved.plans.len(),
            file.display(),
            file.display()
        );
    }
    Ok(if view.any_failed() {
        Exit::Error
    } else if args.detailed && view.any_changes() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

/// Loads every spec, refuses conflicts before any read, then observes once and plans each owner.
async fn observe_fleet(
    g: &GlobalArgs,
    paths: &[PathBuf],
    kind: RunKind,
) -> anyhow::Result<run::PlannedRun> {
    let identities = settings::identities(g)?;
    let files = run::specs::expand(paths)?;
    let loaded = run::specs::load(&files, &identities, SecretMode::Optional)?;
    let twilio = settings::twilio(g)?;
    let (store, vapi) = connect(g).await?;
    let mut planned = run::plan_run(&store, &vapi, loaded, &identities).await?;
    match kind {
        RunKind::Plan => planned.preflight(&twilio).await?,
        RunKind::Drift => planned.twilio_drift(&store, &twilio).await?,
    }
    Ok(planned)
}

async fn plan_one(g: &GlobalArgs, path: &Path, args: &PlanArgs<'_>) -> anyhow::Result<Exit> {
    let PlanArgs {
        detailed,
        format,
        save_to,
        comment_limit,
    } = *args;
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(path, &identities, SecretMode::Optional)?;
    let twilio = settings::twilio(g)?;
    let (store, vapi) = connect(g).await?;
    let plan = pipeline::plan_checked(&store, &vapi, Some(&twilio), &desired, &identities).await?;
    let style = Style {
        color: settings::stdout_color(g),
    };
    let mut out = io::stdout().lock();
    match format {
        Format::Text => render_plan_text(&plan, &style, &mut out)?,
        Format::Markdown => render_plan_markdown(&plan, comment_limit, &mut out)?,
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

pub(crate) async fn drift(
    g: &GlobalArgs,
    paths: &[PathBuf],
    format: Format,
    comment_limit: usize,
) -> anyhow::Result<Exit> {
    if run::specs::is_fleet(paths) {
        let fleet = observe_fleet(g, paths, RunKind::Drift).await?;
        let view = fleet.view(RunKind::Drift);
        let mut out = io::stdout().lock();
        match format {
            Format::Text => {
                let style = Style {
                    color: settings::stdout_color(g),
                };
                render_run_text(&view, &style, &mut out)?
            }
            Format::Markdown => render_run_markdown(&view, comment_limit, &mut out)?,
            Format::Json => render_run_json(&view, &mut out)?,
        }
        out.flush()?;
        return Ok(if view.any_failed() {
            Exit::Error
        } else if view.any_findings() {
            Exit::Changes
        } else {
            Exit::Ok
        });
    }
    let path = &paths[0];
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(path, &identities, SecretMode::Optional)?;
    let twilio = settings::twilio(g)?;
    let (store, vapi) = connect(g).await?;
    let mut plan = pipeline::plan(&store, &vapi, &desired, &identities).await?;
    twilio.drift(&store, &mut [(&desired, &mut plan)]).await?;
    let mut out = io::stdout().lock();
    match format {
        Format::Text => {
            let style = Style {
                color: settings::stdout_color(g),
            };
            render_drift_text(&plan, &style, &mut out)?
        }
        Format::Markdown => render_plan_markdown(&plan, comment_limit, &mut out)?,
        Format::Json => render_plan_json(&plan, &mut out)?,
    }
    out.flush()?;
    Ok(if plan.has_drift() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}
