//! The plain-text (optionally coloured) plan, for terminals and CI logs.

use std::io::{self, Write};

use similar::{ChangeTag, TextDiff};

use crate::apply::ApplyReport;
use crate::plan::{Action, Change, FieldChange, Plan};

/// How to draw: colour or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub(crate) fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub(crate) fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub(crate) fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub(crate) fn cyan(&self, s: &str) -> String {
        self.paint("36", s)
    }
    pub(crate) fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub(crate) fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create | Action::Recreate => "+",
        Action::Adopt => "&",
        Action::Update => "~",
        Action::Delete | Action::RemoveRow => "-",
    }
}

fn paint_action(style: &Style, action: Action, s: &str) -> String {
    match action {
        Action::Create | Action::Recreate => style.green(s),
        Action::Adopt => style.cyan(s),
        Action::Update => style.yellow(s),
        Action::Delete | Action::RemoveRow => style.red(s),
    }
}

/// Writes the plan as text.
pub fn render_plan_text(plan: &Plan, style: &Style, out: &mut dyn Write) -> io::Result<()> {
    for w in &plan.warnings {
        writeln!(out, "{} {w}", style.yellow("warning:"))?;
    }
    if let Some(line) = plan.twilio.summary() {
        writeln!(out, "{}", style.dim(&line))?;
    }
    if plan.is_empty() {
        writeln!(
            out,
            "No changes. Vapi and the database match the spec ({} number{} managed).",
            plan.managed_count,
            if plan.managed_count == 1 { "" } else { "s" }
        )?;
    } else {
        for c in &plan.changes {
            render_change(c, style, out)?;
        }
    }
    for k in &plan.kept {
        writeln!(
            out,
            "  {} {:<9} {}  ({})",
            style.dim("="),
            "keep",
            k.number,
            k.reason
        )?;
    }
    render_not_owned(plan, style, out)?;
    for o in &plan.out_of_scope {
        writeln!(
            out,
            "  {} {:<9} {}  ({})",
            style.dim("~"),
            "leave",
            o.number,
            o.reason
        )?;
    }
    if plan.other_users_count > 0 {
        writeln!(
            out,
            "{}",
            style.dim(&format!(
                "{} number{} in Vapi belong{} to other users (not shown, never touched).",
                plan.other_users_count,
                if plan.other_users_count == 1 { "" } else { "s" },
                if plan.other_users_count == 1 { "s" } else { "" },
            ))
        )?;
    }
    if !plan.unmanaged.is_empty() {
        writeln!(
            out,
            "{}",
            style.dim(&format!(
                "{} number{} in Vapi not managed by this spec (never touched): {}",
                plan.unmanaged.len(),
                if plan.unmanaged.len() == 1 { "" } else { "s" },
                plan.unmanaged
                    .iter()
                    .take(10)
                    .map(|u| u
                        .number
                        .clone()
                        .unwrap_or_else(|| format!("({} {})", u.provider, u.id)))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + if plan.unmanaged.len() > 10 {
                        ", …"
                    } else {
                        ""
                    }
            ))
        )?;
    }
    if !plan.is_empty() {
        let s = plan.summary();
        writeln!(
            out,
            "{} {} to create, {} to adopt, {} to update, {} to delete.",
            style.bold("Plan:"),
            s.create,
            s.adopt,
            s.update,
            s.delete
        )?;
    }
    Ok(())
}

fn render_change(c: &Change, style: &Style, out: &mut dyn Write) -> io::Result<()> {
    let head = format!("{} {:<9}", symbol(c.action), c.action.label());
    writeln!(
        out,
        "  {} {}  {}",
        paint_action(style, c.action, &head),
        style.bold(&c.number),
        style.dim(&format!("({})", c.cause.describe()))
    )?;
    let width = c.fields.iter().map(|f| f.field.len()).max().unwrap_or(0);
    for f in &c.fields {
        render_field(f, width, c.action, style, out)?;
    }
    Ok(())
}

fn quote(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "(none)".into(),
    }
}

fn render_field(
    f: &FieldChange,
    width: usize,
    action: Action,
    style: &Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    let label = format!("{:<width$}", format!("{}:", f.field), width = width + 1);
    if f.sensitive {
        let note = f.note.as_deref().unwrap_or("sensitive value changed");
        return writeln!(out, "      {label} ({note})");
    }
    match action {
        Action::Create | Action::Recreate => {
            writeln!(out, "      {label} {}", style.green(&quote(&f.after)))
        }
        Action::Delete | Action::RemoveRow => {
            writeln!(out, "      {label} {}", style.red(&quote(&f.before)))
        }
        _ => {
            let multiline = f.before.as_deref().is_some_and(|s| s.contains('\n'))
                || f.after.as_deref().is_some_and(|s| s.contains('\n'));
            if multiline {
                writeln!(out, "      {}", label.trim_end())?;
                let before = f.before.clone().unwrap_or_default();
                let after = f.after.clone().unwrap_or_default();
                let diff = TextDiff::from_lines(&before, &after);
                for change in diff.iter_all_changes() {
                    let line = change.value().trim_end_matches('\n');
                    let text = match change.tag() {
                        ChangeTag::Delete => style.red(&format!("- {line}")),
                        ChangeTag::Insert => style.green(&format!("+ {line}")),
                        ChangeTag::Equal => style.dim(&format!("  {line}")),
                    };
                    writeln!(out, "        {text}")?;
                }
                Ok(())
            } else {
                // A note says what happened when the values alone do not (a re-pointed row).
                let note = f
                    .note
                    .as_deref()
                    .map(|n| format!("  {}", style.dim(&format!("({n})"))))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "      {label} {} → {}{note}",
                    style.red(&quote(&f.before)),
                    style.green(&quote(&f.after))
                )
            }
        }
    }
}

/// What Vapi has that the spec does not declare and vapictl keeps: one line each.
fn render_not_owned(plan: &Plan, style: &Style, out: &mut dyn Write) -> io::Result<()> {
    for n in &plan.not_owned {
        writeln!(
            out,
            "  {} {:<9} {}  {} = {}  (set in Vapi, not declared in the spec: kept as it is)",
            style.dim("~"),
            "unowned",
            n.number,
            n.field,
            n.value.as_deref().unwrap_or("(not modelled by vapictl)")
        )?;
    }
    Ok(())
}

/// Writes a drift report: each finding with its cause and fingerprint, and what the spec does
/// not own (which is not drift).
pub fn render_drift_text(plan: &Plan, style: &Style, out: &mut dyn Write) -> io::Result<()> {
    render_not_owned(plan, style, out)?;
    if !plan.has_drift() {
        writeln!(
            out,
            "In sync: Vapi and the database match the spec ({} number{} managed).",
            plan.managed_count,
            if plan.managed_count == 1 { "" } else { "s" }
        )?;
        return Ok(());
    }
    render_twilio_drift_text(plan, style, out)?;
    if plan.is_empty() {
        return Ok(());
    }
    for c in &plan.changes {
        render_change(c, style, out)?;
        writeln!(
            out,
            "      {}",
            style.dim(&format!("fingerprint {}", super::fingerprint(c)))
        )?;
    }
    writeln!(
        out,
        "{} {} finding{}; `vapictl apply` would resolve {}.",
        style.bold("Drift:"),
        plan.changes.len(),
        if plan.changes.len() == 1 { "" } else { "s" },
        if plan.changes.len() == 1 {
            "it"
        } else {
            "them"
        }
    )
}

/// Twilio-side drift findings (issue 13), each with its cause and fingerprint; apply cannot
/// resolve them, so they are counted apart.
fn render_twilio_drift_text(plan: &Plan, style: &Style, out: &mut dyn Write) -> io::Result<()> {
    if plan.twilio_drift.is_empty() {
        return Ok(());
    }
    for d in &plan.twilio_drift {
        writeln!(out, "{} {}", style.yellow("! twilio"), d.message())?;
        writeln!(
            out,
            "      {}",
            style.dim(&format!(
                "cause {}; fingerprint {}",
                d.cause(),
                d.fingerprint
            ))
        )?;
    }
    let n = plan.twilio_drift.len();
    writeln!(
        out,
        "{} {n} Twilio-side finding{}; `vapictl apply` does not change Twilio.\nhint: {}",
        style.bold("Drift:"),
        if n == 1 { "" } else { "s" },
        crate::twilio::preflight::DRIFT_HINT
    )
}

/// Writes what an apply did.
pub fn render_apply_report(
    report: &ApplyReport,
    style: &Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    for o in &report.outcomes {
        match &o.result {
            Ok(()) => writeln!(
                out,
                "  {} {:<9} {}",
                style.green("ok"),
                o.action.label(),
                o.number
            )?,
            Err(e) => {
                let first = e.lines().next().unwrap_or_default();
                writeln!(
                    out,
                    "  {} {:<9} {}: {first}",
                    style.red("failed"),
                    o.action.label(),
                    o.number
                )?;
                for more in e.lines().skip(1) {
                    writeln!(out, "      {more}")?;
                }
            }
        }
    }
    if !report.not_started.is_empty() {
        writeln!(
            out,
            "{} {} change{} not started (stopped): {}",
            style.yellow("stopped:"),
            report.not_started.len(),
            if report.not_started.len() == 1 {
                ""
            } else {
                "s"
            },
            report.not_started.join(", ")
        )?;
    }
    writeln!(
        out,
        "{} {} applied, {} failed, {} not started.",
        style.bold("Apply:"),
        report.succeeded(),
        report.failed(),
        report.not_started.len()
    )
}
