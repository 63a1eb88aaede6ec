//! The plan as a pull-request comment: a summary table, destructive changes first, one
//! collapsible section per number, and a hard size budget.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::plan::{Change, Plan};
use crate::safety::DeleteThreshold;

/// GitHub's limit on a comment body.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// A marker that lets a CI job find and update its own (sticky) comment.
pub const STICKY_MARKER: &str = "<!-- vapictl-plan -->";

pub(crate) fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn code(s: &Option<String>) -> String {
    match s {
        Some(v) => format!("`{}`", v.replace('`', "'").replace('\n', "⏎")),
        None => "_(none)_".into(),
    }
}

pub(crate) fn section(c: &Change) -> String {
    let mut s = String::new();
    let icon = if c.action.is_destructive() {
        "🔴"
    } else {
        "🟢"
    };
    let _ = writeln!(
        s,
        "<details><summary>{icon} <b>{}</b> <code>{}</code> — {}</summary>\n",
        c.action.label(),
        c.number,
        c.cause.describe()
    );
    let _ = writeln!(s, "| field | before | after |\n|---|---|---|");
    for f in &c.fields {
        if f.sensitive {
            let note = f.note.as_deref().unwrap_or("sensitive value changed");
            let _ = writeln!(s, "| `{}` | _(sensitive)_ | _({})_ |", f.field, cell(note));
        } else {
            let note = f
                .note
                .as_deref()
                .map(|n| format!(" _({})_", cell(n)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "| `{}` | {} | {}{note} |",
                f.field,
                cell(&code(&f.before)),
                cell(&code(&f.after))
            );
        }
    }
    let _ = writeln!(s, "\n</details>\n");
    s
}

/// Twilio-side drift findings as a caution block (empty when there are none).
/// What Vapi has that the spec does not declare and vapictl keeps, as one paragraph (empty when
/// there is none).
pub(crate) fn not_owned_markdown(plan: &Plan) -> String {
    if plan.not_owned.is_empty() {
        return String::new();
    }
    format!(
        "**Set in Vapi, not declared in the spec (kept as they are):** {}\n\n",
        plan.not_owned
            .iter()
            .map(|n| format!(
                "`{}` `{}` = {}",
                n.number,
                n.field,
                cell(n.value.as_deref().unwrap_or("(not modelled by vapictl)"))
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(crate) fn twilio_drift_markdown(plan: &Plan) -> String {
    let mut s = String::new();
    if plan.twilio_drift.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "> [!CAUTION]\n> **Twilio-side drift** (`vapictl apply` does not change Twilio):"
    );
    for d in &plan.twilio_drift {
        let _ = writeln!(
            s,
            "> - {} — cause `{}`, fingerprint `{}`",
            cell(&d.message()),
            d.cause(),
            d.fingerprint
        );
    }
    let _ = writeln!(
        s,
        "> hint: {}\n",
        cell(crate::twilio::preflight::DRIFT_HINT)
    );
    s
}

/// Writes the plan as Markdown no longer than `budget` characters.
pub fn render_plan_markdown(plan: &Plan, budget: usize, out: &mut dyn Write) -> io::Result<()> {
    let mut head = String::new();
    let _ = writeln!(
        head,
        "{STICKY_MARKER}\n### vapictl plan for owner `{}`\n",
        plan.owner
    );
    if plan.is_empty() {
        let _ = writeln!(
            head,
            "✅ **No changes.** Vapi and the database match the spec ({} numbers managed).",
            plan.managed_count
        );
    } else {
        let s = plan.summary();
        let _ = writeln!(
            head,
            "| create | adopt | update | delete |\n|---:|---:|---:|---:|\n| {} | {} | {} | {} |\n",
            s.create, s.adopt, s.update, s.delete
        );
        if let Err(refusal) = DeleteThreshold::default().check(plan, None) {
            let _ = writeln!(
                head,
                "> [!CAUTION]\n> **`vapictl apply` will refuse this plan:**"
            );
            for line in refusal.to_string().lines() {
                let _ = writeln!(head, "> {}", cell(line));
            }
            head.push('\n');
        }
    }
    for w in &plan.warnings {
        let _ = writeln!(head, "> [!WARNING]\n> {}\n", cell(w));
    }
    if let Some(line) = plan.twilio.summary() {
        let _ = writeln!(head, "_{}_\n", cell(&line));
    }
    head.push_str(&twilio_drift_markdown(plan));
    let mut tail = String::new();
    if !plan.kept.is_empty() {
        let _ = writeln!(
            tail,
            "**Kept (protected):** {}\n",
            plan.kept
                .iter()
                .map(|k| format!("`{}`", k.number))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    tail.push_str(&not_owned_markdown(plan));
    if !plan.out_of_scope.is_empty() {
        let _ = writeln!(
            tail,
            "**Out of scope (never touched):** {}\n",
            plan.out_of_scope
                .iter()
                .map(|o| format!("`{}` ({})", o.number, cell(&o.reason)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if plan.other_users_count > 0 {
        let _ = writeln!(
            tail,
            "_{} number(s) in Vapi belong to other users (not shown, never touched)._\n",
            plan.other_users_count
        );
    }
    if !plan.unmanaged.is_empty() {
        let _ = writeln!(
            tail,
            "_{} number(s) in Vapi are not managed by this spec and are never touched._\n",
            plan.unmanaged.len()
        );
    }

    // Destructive changes first; each section whole or not at all.
    let mut ordered: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action.is_destructive())
        .collect();
    ordered.extend(plan.changes.iter().filter(|c| !c.action.is_destructive()));
    let reserve = 200; // room for the truncation note
    let mut body = String::new();
    let mut shown = 0;
    for c in &ordered {
        let s = section(c);
        if head.len() + body.len() + s.len() + tail.len() + reserve > budget {
            break;
        }
        body.push_str(&s);
        shown += 1;
    }
    let mut doc = head;
    doc.push_str(&body);
    if shown < ordered.len() {
        let _ = writeln!(
            doc,
            "> [!NOTE]\n> Truncated: {} of {} changes are not shown to stay within the comment size limit. Run `vapictl plan` for the full plan.\n",
            ordered.len() - shown,
            ordered.len()
        );
    }
    if doc.len() + tail.len() <= budget {
        doc.push_str(&tail);
    }
    // The budget is in characters; the sections are ASCII except for a few symbols, so bytes
    // over-count and the result always fits.
    out.write_all(doc.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Cause, FieldChange, RowStep, Target, VapiStep};

    fn change(n: usize, action: Action) -> Change {
        Change {
            number: format!("+1415555{n:04}"),
            action,
            cause: Cause::SpecEdit,
            fields: vec![FieldChange {
                field: "name",
                target: Target::Vapi,
                before: Some("x".repeat(300)),
                after: Some("y".repeat(300)),
                sensitive: false,
                note: None,
                cause: Cause::SpecEdit,
            }],
            vapi: VapiStep::None,
            row: RowStep::None,
            observed: None,
            recorded: None,
        }
    }

    fn render(plan: &Plan, budget: usize) -> String {
        let mut out = Vec::new();
        render_plan_markdown(plan, budget, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn huge_plans_are_cut_to_the_budget_and_say_how_much_is_missing() {
        let mut plan = Plan::default();
        for i in 0..1000 {
            plan.changes.push(change(i, Action::Update));
        }
        let md = render(&plan, GITHUB_COMMENT_LIMIT);
        assert!(md.chars().count() <= GITHUB_COMMENT_LIMIT);
        assert!(md.contains("Truncated:"), "the cut is explicit");
        let shown = md.matches("<details>").count();
        assert!(md.contains(&format!("{} of 1000 changes are not shown", 1000 - shown)));
    }

    #[test]
    fn destructive_changes_come_first() {
        let mut plan = Plan::default();
        plan.changes.push(change(1, Action::Create));
        plan.changes.push(change(2, Action::Delete));
        let md = render(&plan, GITHUB_COMMENT_LIMIT);
        assert!(md.find("+14155550002").unwrap() < md.find("+14155550001").unwrap());
        assert!(md.starts_with(STICKY_MARKER));
    }

    #[test]
    fn small_plans_are_whole() {
        let mut plan = Plan::default();
        plan.changes.push(change(1, Action::Update));
        let md = render(&plan, GITHUB_COMMENT_LIMIT);
        assert!(!md.contains("Truncated"));
        assert!(md.contains("| 0 | 0 | 1 | 0 |"));
    }
}
