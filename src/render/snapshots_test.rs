//! Snapshots of every format for one plan that has each kind of change.

use uuid::Uuid;

use super::*;
use crate::plan::{
    Action, Cause, Change, FieldChange, Kept, OutOfScope, Plan, RowStep, Target, Unmanaged,
    VapiStep,
};

fn field(
    field: &'static str,
    before: Option<&str>,
    after: Option<&str>,
    cause: Cause,
) -> FieldChange {
    FieldChange {
        field,
        target: Target::Vapi,
        before: before.map(String::from),
        after: after.map(String::from),
        sensitive: false,
        note: None,
        cause,
    }
}

fn change(number: &str, action: Action, cause: Cause, fields: Vec<FieldChange>) -> Change {
    Change {
        number: number.into(),
        action,
        cause,
        fields,
        vapi: VapiStep::None,
        row: RowStep::None,
        observed: None,
        recorded: None,
    }
}

fn sample() -> Plan {
    let mut token = field("twilioAuthToken", None, None, Cause::SpecEdit);
    token.sensitive = true;
    token.note = Some("sensitive value changed".into());
    Plan {
        owner: Uuid::from_u128(0x3f1c2b7e_0000_4000_8000_000000000001),
        spec_digest: "abc123".into(),
        managed_count: 3,
        changes: vec![
            change(
                "+14155550001",
                Action::Delete,
                Cause::RemovedFromSpec,
                vec![field("name", Some("Old"), None, Cause::RemovedFromSpec)],
            ),
            change(
                "+14155550002",
                Action::Create,
                Cause::NewInSpec,
                vec![field("name", None, Some("New line"), Cause::NewInSpec)],
            ),
            change(
                "+14155550003",
                Action::Update,
                Cause::SpecEdit,
                vec![
                    field("name", Some("Main"), Some("Main Sales"), Cause::SpecEdit),
                    field(
                        "notes",
                        Some("line one\nline two"),
                        Some("line one\nline 2"),
                        Cause::SpecEdit,
                    ),
                    token,
                ],
            ),
        ],
        kept: vec![Kept {
            number: "+14155550004".into(),
            reason: "protected".into(),
        }],
        unmanaged: vec![Unmanaged {
            number: Some("+14155550005".into()),
            id: "v5".into(),
            provider: "twilio".into(),
        }],
        out_of_scope: vec![OutOfScope {
            number: "+14155550006".into(),
            provider: Some("vonage".into()),
            reason: "a `vonage` number: vapictl manages Twilio numbers only and never deletes it"
                .into(),
        }],
        other_users_count: 2,
        releasable_count: 3,
        spec_entries: 2,
        warnings: vec![],
        blocked: vec![],
        ..Plan::default()
    }
}

fn render(f: impl Fn(&Plan, &mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&sample(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn text_plan() {
    insta::assert_snapshot!(render(|p, o| render_plan_text(p, &Style::default(), o)));
}

#[test]
fn drift_report() {
    insta::assert_snapshot!(render(|p, o| render_drift_text(p, &Style::default(), o)));
}

#[test]
fn markdown_plan() {
    insta::assert_snapshot!(render(|p, o| render_plan_markdown(
        p,
        GITHUB_COMMENT_LIMIT,
        o
    )));
}

#[test]
fn json_plan() {
    insta::assert_snapshot!(render(|p, o| render_plan_json(p, o)));
}
