//! A run over several specs, drawn as one document: text with a section per owner and a run
//! report, one markdown comment (one marker, a summary table, destructive changes first across
//! owners, a hard size budget), or one JSON object whose `plans` are today's single-spec plans.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;
use uuid::Uuid;

use super::json::{FORMAT_VERSION, run_plan_doc};
use super::markdown::{STICKY_MARKER, cell, section};
use super::text::{Style, render_apply_report, render_drift_text, render_plan_text};
use crate::plan::{Change, Plan, Unmanaged};
use crate::run::apply::{OwnerOutcome, Verdict};
use crate::run::observe::Orphan;
use crate::safety::DeleteThreshold;

/// What a run shows: a plan (`plan`) or findings (`drift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Plan,
    Drift,
}

/// One owner of a run: its plan, or why there is none.
#[derive(Debug)]
pub struct RunEntry<'a> {
    pub spec: String,
    pub owner: Option<Uuid>,
    pub result: Result<&'a Plan, String>,
}

/// A planned run, ready to draw.
#[derive(Debug)]
pub struct RunView<'a> {
    pub kind: RunKind,
    pub entries: Vec<RunEntry<'a>>,
    pub unmanaged: &'a [Unmanaged],
    pub orphans: &'a [Orphan],
}

/// Owners and actions over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub owners: usize,
    pub with_changes: usize,
    pub unchanged: usize,
    pub failed: usize,
    /// Owners whose plan `apply` would refuse (deletion gate) — counted with changes too.
    pub refused: usize,
    pub create: usize,
    pub adopt: usize,
    pub update: usize,
    pub delete: usize,
}

fn gate_trips(plan: &Plan) -> bool {
    DeleteThreshold::default().check(plan, None).is_err()
}

impl RunView<'_> {
    pub fn summary(&self) -> RunSummary {
        let mut s = RunSummary {
            owners: self.entries.len(),
            ..RunSummary::default()
        };
        for e in &self.entries {
            match e.result {
                Err(_) => s.failed += 1,
                Ok(p) if p.is_empty() => s.unchanged += 1,
                Ok(p) => {
                    s.with_changes += 1;
                    if gate_trips(p) {
                        s.refused += 1;
                    }
                    let a = p.summary();
                    s.create += a.create;
                    s.adopt += a.adopt;
                    s.update += a.update;
                    s.delete += a.delete;
                }
            }
        }
        s
    }

    /// Any owner failed.
    pub fn any_failed(&self) -> bool {
        self.entries.iter().any(|e| e.result.is_err())
    }

    /// Any owner has changes.
    pub fn any_changes(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.result.as_ref().is_ok_and(|p| !p.is_empty()))
    }

    /// Any owner has a drift finding: a change, a Twilio-side finding, or a number Vapi blocked.
    pub fn any_findings(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.result.as_ref().is_ok_and(|p| p.has_drift()))
    }
}

fn owner_label(owner: Option<Uuid>) -> String {
    owner.map_or_else(|| "unknown owner".to_string(), |o| format!("owner {o}"))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn tail_lines(view: &RunView<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    if !view.unmanaged.is_empty() {
        lines.push(format!(
            "{} in Vapi managed by no one (no user's row, no spec in this run; never touched)",
            plural(view.unmanaged.len(), "number", "numbers")
        ));
    }
    if !view.orphans.is_empty() {
        lines.push(format!(
            "{} rows in the database but no spec in this run (never touched; deleting an owner's numbers takes a spec): {}",
            plural(view.orphans.len(), "owner has", "owners have"),
            view.orphans
                .iter()
                .map(|o| o.owner.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    lines
}

/// Writes the run as text: a section per owner with changes or a failure, a count of the
/// unchanged ones, and the run report.
pub fn render_run_text(view: &RunView<'_>, style: &Style, out: &mut dyn Write) -> io::Result<()> {
    for e in &view.entries {
        match e.result {
            Ok(p)
                if p.is_empty()
                    && p.warnings.is_empty()
                    && p.kept.is_empty()
                    && p.twilio_drift.is_empty() =>
            {
                continue;
            }
            Ok(p) => {
                writeln!(
                    out,
                    "{}",
                    style.bold(&format!("== {} ({})", e.spec, owner_label(e.owner)))
                )?;
                match view.kind {
                    RunKind::Plan => render_plan_text(p, style, out)?,
                    RunKind::Drift => render_drift_text(p, style, out)?,
                }
            }
            Err(ref error) => {
                writeln!(
                    out,
                    "{}",
                    style.bold(&format!("== {} ({})", e.spec, owner_label(e.owner)))
                )?;
                writeln!(out, "{} {error}", style.red("failed:"))?;
            }
        }
        writeln!(out)?;
    }
    let s = view.summary();
    writeln!(
        out,
        "{} {}: {} with {}, {} unchanged, {} failed{}; {} to create, {} to adopt, {} to update, {} to delete.",
        style.bold("Run:"),
        plural(s.owners, "owner", "owners"),
        s.with_changes,
        match view.kind {
            RunKind::Plan => "changes",
            RunKind::Drift => "drift",
        },
        s.unchanged,
        s.failed,
        if s.refused > 0 {
            format!(", {} that apply would refuse (deletion gate)", s.refused)
        } else {
            String::new()
        },
        s.create,
        s.adopt,
        s.update,
        s.delete
    )?;
    for line in tail_lines(view) {
        writeln!(out, "{}", style.dim(&line))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonFailed<'a> {
    spec: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    error: &'a str,
}

#[derive(Serialize)]
struct JsonRun<'a> {
    format_version: u32,
    kind: &'static str,
    summary: RunSummary,
    plans: Vec<super::json::JsonRunPlan<'a>>,
    failed: Vec<JsonFailed<'a>>,
    unmanaged: &'a [Unmanaged],
    orphaned: &'a [Orphan],
}

/// Writes the run as one JSON object (`"kind": "run"`).
pub fn render_run_json(view: &RunView<'_>, out: &mut dyn Write) -> io::Result<()> {
    let doc = JsonRun {
        format_version: FORMAT_VERSION,
        kind: "run",
        summary: view.summary(),
        plans: view
            .entries
            .iter()
            .filter_map(|e| e.result.as_ref().ok().map(|p| run_plan_doc(&e.spec, p)))
            .collect(),
        failed: view
            .entries
            .iter()
            .filter_map(|e| {
                e.result.as_ref().err().map(|error| JsonFailed {
                    spec: &e.spec,
                    owner: e.owner.map(|o| o.to_string()),
                    error,
                })
            })
            .collect(),
        unmanaged: view.unmanaged,
        orphaned: view.orphans,
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// Room kept for the closing lines and the truncation note.
const RESERVE: usize = 600;

/// Writes the run as one pull-request comment no longer than `budget` characters.
pub fn render_run_markdown(
    view: &RunView<'_>,
    budget: usize,
    out: &mut dyn Write,
) -> io::Result<()> {
    let s = view.summary();
    let what = match view.kind {
        RunKind::Plan => "plan",
        RunKind::Drift => "drift",
    };
    let mut doc = String::new();
    let _ = writeln!(
        doc,
        "{STICKY_MARKER}\n### vapictl {what}: {}\n",
        plural(s.owners, "owner", "owners")
    );
    let _ = writeln!(
        doc,
        "**{}** with changes, **{}** unchanged, **{}** failed, **{}** refused by the deletion gate — {} to create, {} to adopt, {} to update, {} to delete.\n",
        s.with_changes, s.unchanged, s.failed, s.refused, s.create, s.adopt, s.update, s.delete
    );

    // Owners in the order they are shown: failed, then with destructive changes, then the rest.
    let rank = |e: &RunEntry<'_>| match e.result {
        Err(_) => 0,
        Ok(p) if p.changes.iter().any(|c| c.action.is_destructive()) => 1,
        Ok(_) => 2,
    };
    let mut shown: Vec<&RunEntry<'_>> = view
        .entries
        .iter()
        .filter(|e| e.result.as_ref().map_or(true, |p| p.has_drift()))
        .collect();
    shown.sort_by_key(|e| rank(e));

    // The summary table: one row per owner with changes, a failure or a refusal.
    let mut table_rows_cut = 0;
    if !shown.is_empty() {
        let _ = writeln!(
            doc,
            "| owner | spec | create | adopt | update | delete | status |\n|---|---|---:|---:|---:|---:|---|"
        );
        for (i, e) in shown.iter().enumerate() {
            let row = match e.result {
                Err(_) => format!(
                    "| {} | `{}` | | | | | ❌ failed |\n",
                    e.owner.map_or("?".into(), |o| format!("`{o}`")),
                    cell(&e.spec)
                ),
                Ok(p) => {
                    let a = p.summary();
                    let status = if gate_trips(p) {
                        "⛔ needs `--allow-deletes`"
                    } else if a.delete > 0 {
                        "🔴 destructive"
                    } else {
                        "🟢 changes"
                    };
                    format!(
                        "| `{}` | `{}` | {} | {} | {} | {} | {status} |\n",
                        p.owner,
                        cell(&e.spec),
                        a.create,
                        a.adopt,
                        a.update,
                        a.delete
                    )
                }
            };
            // The table may take half the budget; the details need the rest.
            if doc.len() + row.len() + RESERVE > budget / 2 {
                table_rows_cut = shown.len() - i;
                break;
            }
            doc.push_str(&row);
        }
        if table_rows_cut > 0 {
            let _ = writeln!(
                doc,
                "| _…{} more_ | | | | | | |",
                plural(table_rows_cut, "owner", "owners")
            );
        }
        doc.push('\n');
    }
    if s.unchanged > 0 {
        let _ = writeln!(
            doc,
            "_{} no changes._\n",
            plural(s.unchanged, "owner has", "owners have")
        );
    }
    let mut tail = String::new();
    for line in tail_lines(view) {
        let _ = writeln!(tail, "_{}._\n", cell(&line));
    }

    // Details: destructive changes first across owners, each owner collapsible.
    let total_changes: usize = shown
        .iter()
        .filter_map(|e| e.result.as_ref().ok())
        .map(|p| p.changes.len())
        .sum();
    let mut changes_shown = 0;
    let mut owners_cut = 0;
    let mut cut = false;
    for e in &shown {
        if cut {
            owners_cut += 1;
            continue;
        }
        let mut block = String::new();
        match e.result {
            Err(ref error) => {
                let _ = writeln!(
                    block,
                    "<details open><summary>❌ <b>{}</b> <code>{}</code> failed</summary>\n\n```\n{}\n```\n\n</details>\n",
                    owner_label(e.owner),
                    e.spec,
                    error.replace("```", "'''")
                );
                if doc.len() + block.len() + tail.len() + RESERVE > budget {
                    cut = true;
                    owners_cut += 1;
                    continue;
                }
                doc.push_str(&block);
            }
            Ok(p) => {
                let a = p.summary();
                let _ = writeln!(
                    block,
                    "<details><summary>{} <b>owner <code>{}</code></b> (<code>{}</code>): {} to create, {} to adopt, {} to update, {} to delete</summary>\n",
                    if a.delete > 0 { "🔴" } else { "🟢" },
                    p.owner,
                    e.spec,
                    a.create,
                    a.adopt,
                    a.update,
                    a.delete
                );
                if let Err(refusal) = DeleteThreshold::default().check(p, None) {
                    let _ = writeln!(
                        block,
                        "> [!CAUTION]\n> **`vapictl apply` will refuse this owner's plan:**"
                    );
                    for line in refusal.to_string().lines() {
                        let _ = writeln!(block, "> {}", cell(line));
                    }
                    block.push('\n');
                }
                for w in &p.warnings {
                    let _ = writeln!(block, "> [!WARNING]\n> {}\n", cell(w));
                }
                block.push_str(&super::markdown::twilio_drift_markdown(p));
                block.push_str(&super::markdown::not_owned_markdown(p));
                let close = "</details>\n\n";
                if doc.len() + block.len() + close.len() + tail.len() + RESERVE > budget {
                    cut = true;
                    owners_cut += 1;
                    continue;
                }
                let mut ordered: Vec<&Change> = p
                    .changes
                    .iter()
                    .filter(|c| c.action.is_destructive())
                    .collect();
                ordered.extend(p.changes.iter().filter(|c| !c.action.is_destructive()));
                let mut n = 0;
                for c in ordered {
                    let sec = section(c);
                    if doc.len() + block.len() + sec.len() + close.len() + tail.len() + RESERVE
                        > budget
                    {
                        cut = true;
                        break;
                    }
                    block.push_str(&sec);
                    n += 1;
                }
                if n == 0 && !p.changes.is_empty() {
                    owners_cut += 1;
                    continue;
                }
                changes_shown += n;
                block.push_str(close);
                doc.push_str(&block);
            }
        }
    }
    if changes_shown < total_changes || owners_cut > 0 {
        let _ = writeln!(
            doc,
            "> [!NOTE]\n> Truncated to stay within the comment size limit: {} of {} changes are not shown{}. The full plan is in the JSON output (`vapictl {what} --format json`).\n",
            total_changes - changes_shown,
            total_changes,
            if owners_cut > 0 {
                format!(
                    " ({} not shown at all)",
                    plural(owners_cut, "owner", "owners")
                )
            } else {
                String::new()
            }
        );
    }
    if doc.len() + tail.len() <= budget {
        doc.push_str(&tail);
    }
    out.write_all(doc.as_bytes())
}

/// One owner of an apply run and what happened to it.
#[derive(Debug)]
pub struct ApplyEntry<'a> {
    pub spec: String,
    pub owner: Option<Uuid>,
    pub outcome: Result<&'a OwnerOutcome, String>,
}

/// The end of an apply run: each owner's report, then the run report (owners succeeded /
/// failed / refused / unchanged, with counts per action).
pub fn render_run_apply_report(
    entries: &[ApplyEntry<'_>],
    style: &Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    let (mut ok, mut unchanged, mut failed, mut refused) = (0, 0, 0, 0);
    let mut done = crate::plan::Summary::default();
    for e in entries {
        let head = style.bold(&format!("== {} ({})", e.spec, owner_label(e.owner)));
        let outcome = match &e.outcome {
            Err(error) => {
                failed += 1;
                writeln!(out, "{head}\n{} {error}\n", style.red("failed:"))?;
                continue;
            }
            Ok(o) => *o,
        };
        match outcome.verdict() {
            Verdict::Failed => failed += 1,
            Verdict::Refused => refused += 1,
            Verdict::Ok if matches!(outcome, OwnerOutcome::NoChanges(_)) => unchanged += 1,
            Verdict::Ok => ok += 1,
        }
        if let Some(report) = outcome.report() {
            for o in report.outcomes.iter().filter(|o| o.result.is_ok()) {
                match o.action {
                    crate::plan::Action::Create | crate::plan::Action::Recreate => done.create += 1,
                    crate::plan::Action::Adopt => done.adopt += 1,
                    crate::plan::Action::Update => done.update += 1,
                    crate::plan::Action::Delete | crate::plan::Action::RemoveRow => {
                        done.delete += 1
                    }
                }
            }
        }
        match outcome {
            OwnerOutcome::NoChanges(_) => continue,
            OwnerOutcome::Refused { refusal, .. } => {
                writeln!(
                    out,
                    "{head}\n{} {}\n",
                    style.yellow("refused:"),
                    refusal.to_string().trim_end()
                )?;
            }
            OwnerOutcome::Cancelled(_) => {
                writeln!(out, "{head}\ncancelled: nothing was changed\n")?;
            }
            OwnerOutcome::Stopped(_) => {
                writeln!(
                    out,
                    "{head}\nstopped before applying: nothing was changed\n"
                )?;
            }
            OwnerOutcome::Failed(error) => {
                writeln!(
                    out,
                    "{head}\n{} {}\n",
                    style.red("failed:"),
                    error.to_string().trim_end()
                )?;
            }
            other => {
                writeln!(out, "{head}")?;
                if let Some(report) = other.report() {
                    render_apply_report(report, style, out)?;
                }
                match other {
                    OwnerOutcome::NotConverged { remaining, .. } => writeln!(
                        out,
                        "{} apply finished but {remaining} change(s) remain",
                        style.red("failed:")
                    )?,
                    OwnerOutcome::ReplanFailed { error, .. } => writeln!(
                        out,
                        "{} re-reading after apply: {error}",
                        style.red("failed:")
                    )?,
                    _ => {}
                }
                writeln!(out)?;
            }
        }
    }
    writeln!(
        out,
        "{} {}: {ok} applied, {unchanged} unchanged, {failed} failed, {refused} refused; {} created, {} adopted, {} updated, {} deleted.",
        style.bold("Run:"),
        plural(entries.len(), "owner", "owners"),
        done.create,
        done.adopt,
        done.update,
        done.delete
    )
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
