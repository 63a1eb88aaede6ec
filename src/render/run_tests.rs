//! Tests of the run renderers (`run.rs`).

use super::*;
use crate::plan::{Action, Cause, FieldChange, RowStep, Target, VapiStep};

fn plan(owner: u128, changes: usize, action: Action) -> Plan {
    Plan {
        owner: Uuid::from_u128(owner),
        changes: (0..changes)
            .map(|i| Change {
                number: format!("+1415{owner:03}{i:04}"),
                action,
                cause: if action == Action::Delete {
                    Cause::RemovedFromSpec
                } else {
                    Cause::SpecEdit
                },
                fields: vec![FieldChange {
                    field: "name",
                    target: Target::Vapi,
                    before: Some("x".repeat(200)),
                    after: Some("y".repeat(200)),
                    sensitive: false,
                    note: None,
                    cause: Cause::SpecEdit,
                }],
                vapi: VapiStep::None,
                row: RowStep::None,
                observed: None,
                recorded: None,
            })
            .collect(),
        managed_count: 1000,
        ..Plan::default()
    }
}

fn markdown(view: &RunView<'_>, budget: usize) -> String {
    let mut out = Vec::new();
    render_run_markdown(view, budget, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn one_document_under_the_budget_destructive_owners_first_and_the_cut_named() {
    let plans: Vec<Plan> = (0..60)
        .map(|o| {
            plan(
                o,
                40,
                if o == 59 {
                    Action::Delete
                } else {
                    Action::Update
                },
            )
        })
        .collect();
    let empty = Plan::default();
    let mut entries: Vec<RunEntry<'_>> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| RunEntry {
            spec: format!("vapi/{i:02}.yaml"),
            owner: Some(p.owner),
            result: Ok(p),
        })
        .collect();
    entries.push(RunEntry {
        spec: "vapi/empty.yaml".into(),
        owner: Some(Uuid::from_u128(999)),
        result: Ok(&empty),
    });
    entries.push(RunEntry {
        spec: "vapi/bad.yaml".into(),
        owner: None,
        result: Err("spec `vapi/bad.yaml` is invalid".into()),
    });
    let view = RunView {
        kind: RunKind::Plan,
        entries,
        unmanaged: &[],
        orphans: &[],
    };
    for budget in [65_536, 32_768] {
        let md = markdown(&view, budget);
        assert!(md.chars().count() <= budget, "{} > {budget}", md.len());
        assert_eq!(md.matches(STICKY_MARKER).count(), 1);
        assert!(md.contains("Truncated") && md.contains("--format json"));
        assert!(md.contains("_1 owner has no changes._"));
        let bad = md.find("vapi/bad.yaml").unwrap();
        let destructive = md.find("vapi/59.yaml").unwrap();
        assert!(bad < destructive && destructive < md.find("vapi/00.yaml").unwrap());
    }
    let s = view.summary();
    assert_eq!(
        (s.owners, s.with_changes, s.unchanged, s.failed),
        (62, 60, 1, 1)
    );
    assert_eq!((s.update, s.delete, s.refused), (59 * 40, 40, 1));
}
