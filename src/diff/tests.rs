//! One test per row of the decision table, plus the refusals and field rules.
use std::collections::BTreeMap;

use super::*;
use uuid::Uuid;

use crate::secrets::{SecretValue, token_digest};
use crate::state::AssistantRow;
use crate::state::{DesiredTwilio, E164, EncryptedToken, ObservedAssistant};

const OWNER: Uuid = Uuid::from_u128(0x3f1c2b7e_0000_4000_8000_000000000001);
const OTHER: Uuid = Uuid::from_u128(0x99);
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const N1: &str = "+14155551234";
const N2: &str = "+14155551235";

fn token(armored: &str, plain: Option<&str>) -> EncryptedToken {
    EncryptedToken {
        armored: armored.into(),
        plaintext: plain.map(SecretValue::new),
    }
}

fn want(n: &str) -> DesiredNumber {
    DesiredNumber {
        number: E164::new_unchecked(n),
        name: "Main".into(),
        assistant: None,
        squad: None,
        notes: None,
        twilio: DesiredTwilio {
            account_sid: SID.into(),
            auth_token: token("ARMOR-A", Some(&"a".repeat(32))),
            api_key: None,
        },
        server: None,
        sms_enabled: true,
        fallback_destination: None,
        hooks: None,
        protected: false,
        absent: false,
        line: 3,
        path: "phoneNumbers[0]".into(),
        positions: BTreeMap::from([
            (
                "number",
                crate::spec::Location {
                    line: 3,
                    column: 13,
                },
            ),
            (
                "assistant",
                crate::spec::Location {
                    line: 5,
                    column: 16,
                },
            ),
        ]),
        from_defaults: Vec::new(),
    }
}

fn desired(numbers: Vec<DesiredNumber>) -> DesiredState {
    DesiredState {
        owner: OWNER,
        numbers: numbers.into_iter().map(|d| (d.number.clone(), d)).collect(),
        spec_digest: "d".into(),
        spec_path: "spec.yaml".into(),
    }
}

fn row(n: &str, vapi_id: Option<&str>) -> PhoneRow {
    PhoneRow {
        id: Uuid::new_v4(),
        user_id: OWNER,
        phone_number: n.into(),
        friendly_name: Some("Main".into()),
        provider: "twilio".into(),
        vapi_phone_id: vapi_id.map(Into::into),
        vapi_credential_id: None,
        twilio_account_sid: Some(SID.into()),
        twilio_auth_token: Some("ARMOR-A".into()),
        api_key: None,
        api_secret: None,
        assigned_assistant_id: None,
        assigned_squad_id: None,
        notes: None,
        token_digest: Some(token_digest(&SecretValue::new("a".repeat(32)))),
        protected: false,
        applied: None,
    }
}

fn recorded(rows: Vec<PhoneRow>) -> RecordedState {
    RecordedState {
        rows: rows
            .into_iter()
            .map(|r| (r.phone_number.clone(), r))
            .collect(),
        ..RecordedState::default()
    }
}

fn seen(n: &str, id: &str) -> ObservedNumber {
    ObservedNumber {
        id: id.into(),
        provider: "twilio".into(),
        number: Some(n.into()),
        name: Some("Main".into()),
        assistant_id: None,
        squad_id: None,
        workflow_id: None,
        server: None,
        server_raw: None,
        sms_enabled: None,
        fallback_destination: None,
        hooks: None,
        status: None,
        twilio_account_sid: Some(SID.into()),
        credential_id: None,
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

fn observed(numbers: Vec<ObservedNumber>) -> ObservedState {
    ObservedState {
        numbers,
        ..ObservedState::default()
    }
}

fn only(plan: &Plan) -> &Change {
    assert_eq!(plan.changes.len(), 1, "{:#?}", plan.changes);
    &plan.changes[0]
}

#[test]
fn in_spec_only_is_created_then_inserted() {
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![]),
        &observed(vec![]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!((c.action, c.cause), (Action::Create, Cause::NewInSpec));
    assert!(matches!(c.vapi, VapiStep::Create(_)));
    assert!(matches!(c.row, RowStep::Insert(_)));
}

#[test]
fn unrecorded_vapi_number_is_adopted_not_posted() {
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!((c.action, c.cause), (Action::Adopt, Cause::AdoptUnmanaged));
    let VapiStep::Update { id, patch } = &c.vapi else {
        panic!("adopt must PATCH, not POST: {:?}", c.vapi)
    };
    assert_eq!(id, "v1");
    // Nothing but the token differs; the token is sent because Vapi never shows it.
    assert!(patch.token.is_some() && patch.name.is_none() && patch.assistant_id.is_none());
    let RowStep::Insert(values) = &c.row else {
        panic!()
    };
    assert_eq!(values.vapi_phone_id.as_deref(), Some("v1"));
}

#[test]
fn everything_equal_plans_nothing() {
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    assert!(plan.is_empty(), "{:#?}", plan.changes);
}

#[test]
fn spec_edit_patches_only_changed_fields_and_updates_row() {
    let mut d = want(N1);
    d.name = "Sales".into();
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!((c.action, c.cause), (Action::Update, Cause::SpecEdit));
    let VapiStep::Update { patch, .. } = &c.vapi else {
        panic!()
    };
    assert_eq!(
        **patch,
        VapiPatch {
            name: Some("Sales".into()),
            ..VapiPatch::default()
        }
    );
    let RowStep::Update { values, .. } = &c.row else {
        panic!()
    };
    assert_eq!(values.friendly_name, "Sales");
}

#[test]
fn dashboard_edit_is_reverted_and_blamed_on_vapi() {
    let mut o = seen(N1, "v1");
    o.name = Some("Changed by hand".into());
    o.sms_enabled = Some(false);
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row_applied(&want(N1))]),
        &observed(vec![o.clone()]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(
        (c.action, c.cause),
        (Action::Update, Cause::VapiEditedOutOfBand)
    );
    let VapiStep::Update { patch, .. } = &c.vapi else {
        panic!()
    };
    assert_eq!(patch.name.as_deref(), Some("Main"));
    assert_eq!(patch.sms_enabled, Some(true));
    assert!(matches!(c.row, RowStep::None), "the row already matches");

    // A row with no record of what was applied gets one with the PATCH.
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![o]),
    )
    .unwrap();
    let RowStep::Update { values, .. } = &only(&plan).row else {
        panic!()
    };
    assert_eq!(
        values.applied,
        Some(fields::Applied::of(&want(N1)).to_json())
    );
}

#[test]
fn deleted_in_vapi_is_recreated_and_row_repointed() {
    let r = row(N1, Some("gone"));
    let row_id = r.id;
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![r]),
        &observed(vec![]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(
        (c.action, c.cause),
        (Action::Recreate, Cause::DeletedInVapi)
    );
    assert!(matches!(c.vapi, VapiStep::Create(_)));
    assert!(matches!(&c.row, RowStep::Update { row_id: id, .. } if *id == row_id));
}

#[test]
fn removed_from_spec_is_deleted_in_vapi_then_row() {
    let plan = diff(
        &desired(vec![]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(
        (c.action, c.cause),
        (Action::Delete, Cause::RemovedFromSpec)
    );
    assert!(matches!(&c.vapi, VapiStep::Delete { id } if id == "v1"));
    assert!(matches!(c.row, RowStep::Delete { .. }));
    assert_eq!(plan.implicit_deletes(), 1);
}

#[test]
fn protected_row_is_kept_after_its_entry_is_removed() {
    let mut r = row(N1, Some("v1"));
    r.protected = true;
    let plan = diff(
        &desired(vec![]),
        &recorded(vec![r]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.kept.len(), 1);
    assert_eq!(plan.kept[0].number, N1);
}

#[test]
fn stale_row_without_vapi_number_is_removed() {
    let plan = diff(
        &desired(vec![]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(
        (c.action, c.cause),
        (Action::RemoveRow, Cause::StaleDatabaseRow)
    );
    assert!(matches!(c.vapi, VapiStep::None));
    assert!(matches!(c.row, RowStep::Delete { .. }));
    assert_eq!(plan.implicit_deletes(), 0, "no number is released");
}

#[test]
fn number_of_another_user_is_refused() {
    let mut rec = recorded(vec![]);
    rec.foreign.insert(N1.into(), OTHER);
    let err = diff(
        &desired(vec![want(N1)]),
        &rec,
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap_err();
    assert_eq!(err.items.len(), 1);
    assert!(
        err.items[0].reason.message().contains("another user"),
        "{}",
        err
    );
    assert_eq!(err.items[0].line(), Some(3));
}

#[test]
fn unmanaged_vapi_number_is_listed_and_untouched() {
    let plan = diff(
        &desired(vec![]),
        &recorded(vec![]),
        &observed(vec![seen(N2, "v2")]),
    )
    .unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.unmanaged.len(), 1);
    assert_eq!(plan.unmanaged[0].number.as_deref(), Some(N2));
}

#[test]
fn absent_entry_deletes_even_an_unrecorded_vapi_number() {
    let mut d = want(N1);
    d.absent = true;
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!((c.action, c.cause), (Action::Delete, Cause::MarkedAbsent));
    assert!(matches!(c.row, RowStep::None));
    assert_eq!(plan.implicit_deletes(), 0);
}

#[test]
fn absent_entry_already_gone_plans_nothing() {
    let mut d = want(N1);
    d.absent = true;
    let plan = diff(&desired(vec![d]), &recorded(vec![]), &observed(vec![])).unwrap();
    assert!(plan.is_empty());
}

#[test]
fn row_without_vapi_id_is_created_and_repointed() {
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row(N1, None)]),
        &observed(vec![]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!((c.action, c.cause), (Action::Create, Cause::NewInSpec));
    assert!(matches!(c.row, RowStep::Update { .. }));
}

#[test]
fn row_pointing_at_another_vapi_id_is_repointed() {
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row(N1, Some("old"))]),
        &observed(vec![seen(N1, "new")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!((c.action, c.cause), (Action::Update, Cause::DeletedInVapi));
    // The copy in use never got the token from vapictl: it is sent, as in an adopt.
    let VapiStep::Update { id, patch } = &c.vapi else {
        panic!("{:?}", c.vapi)
    };
    assert_eq!(id, "new");
    assert!(patch.token.is_some() && patch.name.is_none());
    let RowStep::Update { values, .. } = &c.row else {
        panic!()
    };
    assert_eq!(values.vapi_phone_id.as_deref(), Some("new"));
    let repoint = c.fields.iter().find(|f| f.field == "vapiPhoneId").unwrap();
    assert!(
        repoint
            .note
            .as_deref()
            .unwrap()
            .contains("`old` no longer exists"),
        "{repoint:?}"
    );
}

#[test]
fn row_edited_to_point_at_another_number_repoints_and_sends_the_token() {
    let plan = diff(
        &desired(vec![want(N1), want(N2)]),
        &recorded(vec![row(N1, Some("v2")), row(N2, Some("v2"))]),
        &observed(vec![seen(N1, "v1"), seen(N2, "v2")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(c.number, N1);
    assert_eq!(c.cause, Cause::DatabaseEditedOutOfBand);
    let VapiStep::Update { id, patch } = &c.vapi else {
        panic!("{:?}", c.vapi)
    };
    assert_eq!(id, "v1");
    assert!(patch.token.is_some());
}

#[test]
fn row_without_a_vapi_id_gets_the_token_on_the_copy_it_is_matched_to() {
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row(N1, None)]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    let VapiStep::Update { patch, .. } = &c.vapi else {
        panic!("{:?}", c.vapi)
    };
    assert!(patch.token.is_some());
    assert!(matches!(c.row, RowStep::Update { .. }));
}

#[test]
fn duplicate_in_vapi_without_a_row_is_refused() {
    let err = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![]),
        &observed(vec![seen(N1, "a"), seen(N1, "b")]),
    )
    .unwrap_err();
    assert!(err.items[0].reason.message().contains("2 times"), "{err}");
}

#[test]
fn duplicate_in_vapi_with_a_row_uses_the_recorded_one_and_warns() {
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row(N1, Some("b"))]),
        &observed(vec![seen(N1, "a"), seen(N1, "b")]),
    )
    .unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.warnings.len(), 1);
}

#[test]
fn other_provider_with_the_same_number_is_refused() {
    let mut o = seen(N1, "v1");
    o.provider = "vonage".into();
    let err = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![]),
        &observed(vec![o]),
    )
    .unwrap_err();
    assert!(err.items[0].reason.message().contains("vonage"));
}

fn with_assistants(rec: &mut RecordedState, obs: &mut ObservedState) -> Uuid {
    let id = Uuid::from_u128(7);
    rec.assistants.push(AssistantRow {
        id,
        user_id: OWNER,
        name: Some("sales-bot".into()),
        vapi_id: Some("va-1".into()),
    });
    rec.assistants.push(AssistantRow {
        id: Uuid::from_u128(8),
        user_id: OTHER,
        name: Some("their-bot".into()),
        vapi_id: Some("va-2".into()),
    });
    for (vid, name) in [("va-1", "sales-bot"), ("va-2", "their-bot")] {
        obs.assistants.insert(
            vid.into(),
            ObservedAssistant {
                id: vid.into(),
                name: Some(name.into()),
            },
        );
    }
    id
}

#[test]
fn assistant_name_resolves_to_vapi_id_and_row_id() {
    let mut rec = recorded(vec![row(N1, Some("v1"))]);
    let mut obs = observed(vec![seen(N1, "v1")]);
    let row_id = with_assistants(&mut rec, &mut obs);
    let mut d = want(N1);
    d.assistant = Some("sales-bot".into());
    let plan = diff(&desired(vec![d]), &rec, &obs).unwrap();
    let c = only(&plan);
    let VapiStep::Update { patch, .. } = &c.vapi else {
        panic!()
    };
    assert_eq!(patch.assistant_id, Some(Some("va-1".into())));
    let RowStep::Update { values, .. } = &c.row else {
        panic!()
    };
    assert_eq!(values.assigned_assistant_id, Some(row_id));
}

#[test]
fn removing_the_assistant_clears_it() {
    let mut rec = recorded(vec![row(N1, Some("v1"))]);
    let mut obs = observed(vec![seen(N1, "v1")]);
    let row_id = with_assistants(&mut rec, &mut obs);
    rec.rows.get_mut(N1).unwrap().assigned_assistant_id = Some(row_id);
    obs.numbers[0].assistant_id = Some("va-1".into());
    let plan = diff(&desired(vec![want(N1)]), &rec, &obs).unwrap();
    let VapiStep::Update { patch, .. } = &only(&plan).vapi else {
        panic!()
    };
    assert_eq!(patch.assistant_id, Some(None));
}

#[test]
fn another_users_assistant_is_refused() {
    let mut rec = recorded(vec![]);
    let mut obs = observed(vec![]);
    with_assistants(&mut rec, &mut obs);
    let mut d = want(N1);
    d.assistant = Some("their-bot".into());
    let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
    assert!(
        err.items[0]
            .reason
            .message()
            .contains("belongs to another user"),
        "{err}"
    );
}

#[test]
fn unknown_assistant_is_refused_listing_known_ones() {
    let mut rec = recorded(vec![]);
    let mut obs = observed(vec![]);
    with_assistants(&mut rec, &mut obs);
    let mut d = want(N1);
    d.assistant = Some("nope".into());
    let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
    assert!(err.items[0].reason.message().contains("unknown assistant"));
    assert!(err.items[0].reason.hint().contains("sales-bot"));
}

#[test]
fn assistant_missing_in_vapi_is_refused() {
    let mut rec = recorded(vec![]);
    let mut obs = observed(vec![]);
    with_assistants(&mut rec, &mut obs);
    obs.assistants.clear();
    let mut d = want(N1);
    d.assistant = Some("sales-bot".into());
    let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
    assert!(
        err.items[0]
            .reason
            .message()
            .contains("does not exist in Vapi")
    );
}

#[test]
fn ambiguous_assistant_name_is_refused() {
    let mut rec = recorded(vec![]);
    let mut obs = observed(vec![]);
    with_assistants(&mut rec, &mut obs);
    let mut twin = rec.assistants[0].clone();
    twin.id = Uuid::from_u128(9);
    rec.assistants.push(twin);
    let mut d = want(N1);
    d.assistant = Some("sales-bot".into());
    let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
    assert!(err.items[0].reason.message().contains("matches 2"));
}

#[test]
fn rotated_token_is_sent_and_shown_as_sensitive() {
    let mut d = want(N1);
    d.twilio.auth_token = token("ARMOR-B", Some(&"b".repeat(32)));
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    let VapiStep::Update { patch, .. } = &c.vapi else {
        panic!()
    };
    assert!(patch.token.is_some());
    let f = c
        .fields
        .iter()
        .find(|f| f.field == "twilioAuthToken")
        .unwrap();
    assert!(f.sensitive && f.before.is_none() && f.after.is_none());
    assert_eq!(f.note.as_deref(), Some("sensitive value changed"));
}

#[test]
fn re_encrypted_same_token_updates_only_the_row() {
    let mut d = want(N1);
    d.twilio.auth_token = token("ARMOR-A2", Some(&"a".repeat(32)));
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert!(matches!(c.vapi, VapiStep::None));
    let RowStep::Update { values, .. } = &c.row else {
        panic!()
    };
    assert_eq!(values.twilio_auth_token, "ARMOR-A2");
    assert!(values.token_digest.is_some(), "the digest is kept");
}

#[test]
fn keyless_changed_ciphertext_cannot_be_verified() {
    let mut d = want(N1);
    d.twilio.auth_token = token("ARMOR-B", None);
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let f = only(&plan)
        .fields
        .iter()
        .find(|f| f.field == "twilioAuthToken")
        .unwrap();
    assert_eq!(
        f.note.as_deref(),
        Some("token changed (cannot verify without key)")
    );
}

#[test]
fn keyless_same_ciphertext_plans_nothing() {
    let mut d = want(N1);
    d.twilio.auth_token = token("ARMOR-A", None);
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    assert!(plan.is_empty());
}

#[test]
fn server_default_timeout_equals_unset() {
    let mut d = want(N1);
    d.server = Some(ServerConfig::with_url("https://x.test/hook"));
    let mut o = seen(N1, "v1");
    o.server = Some(ServerConfig {
        timeout_seconds: Some(20),
        ..ServerConfig::with_url("https://x.test/hook")
    });
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![o]),
    )
    .unwrap();
    assert!(plan.is_empty());
}

#[test]
fn removed_server_is_cleared() {
    let mut o = seen(N1, "v1");
    o.server = Some(ServerConfig::with_url("https://x.test/hook"));
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![o]),
    )
    .unwrap();
    let VapiStep::Update { patch, .. } = &only(&plan).vapi else {
        panic!()
    };
    assert_eq!(patch.server, Some(None));
}

#[test]
fn notes_change_touches_only_the_database() {
    let mut d = want(N1);
    d.notes = Some("call center".into());
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert!(matches!(c.vapi, VapiStep::None));
    assert!(matches!(c.row, RowStep::Update { .. }));
}

#[test]
fn deletes_are_ordered_before_creates() {
    let plan = diff(
        &desired(vec![want(N2)]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let actions: Vec<Action> = plan.changes.iter().map(|c| c.action).collect();
    assert_eq!(actions, vec![Action::Delete, Action::Create]);
}

// ---------------------------------------------------------------------------------------------
// Scope: numbers of other providers (issue 9, defect 1)
// ---------------------------------------------------------------------------------------------

const OTHER_PROVIDERS: [&str; 4] = ["vonage", "telnyx", "vapi", "byo-phone-number"];

fn row_of(n: &str, vapi_id: Option<&str>, provider: &str) -> PhoneRow {
    PhoneRow {
        provider: provider.into(),
        ..row(n, vapi_id)
    }
}

fn seen_as(n: &str, id: &str, provider: &str) -> ObservedNumber {
    ObservedNumber {
        provider: provider.into(),
        ..seen(n, id)
    }
}

#[test]
fn other_provider_numbers_removed_from_the_spec_are_out_of_scope_never_deleted() {
    for p in OTHER_PROVIDERS {
        for (r, o) in [
            // The row and Vapi agree on the provider.
            (row_of(N1, Some("v1"), p), Some(seen_as(N1, "v1", p))),
            // Only Vapi says so (the row claims Twilio, or has no provider).
            (row_of(N1, Some("v1"), "twilio"), Some(seen_as(N1, "v1", p))),
            (row_of(N1, Some("v1"), ""), Some(seen_as(N1, "v1", p))),
            // Only the row says so, and Vapi has no such number.
            (row_of(N1, Some("v1"), p), None),
            // Only the row says so; Vapi lists it as Twilio.
            (row_of(N1, Some("v1"), p), Some(seen(N1, "v1"))),
        ] {
            let plan = diff(
                &desired(vec![]),
                &recorded(vec![r.clone()]),
                &observed(o.into_iter().collect()),
            )
            .unwrap();
            assert!(plan.is_empty(), "{p}: {:#?}", plan.changes);
            assert_eq!(plan.out_of_scope.len(), 1, "{p}");
            assert_eq!(plan.out_of_scope[0].number, N1);
            assert!(
                plan.unmanaged.is_empty(),
                "{p}: the owner's number is not unmanaged"
            );
            assert_eq!(plan.implicit_deletes(), 0);
            assert_eq!(plan.managed_count, 0, "{p}: vapictl does not manage it");
        }
    }
}

#[test]
fn other_provider_numbers_marked_absent_are_refused_not_deleted() {
    for p in OTHER_PROVIDERS {
        let mut d = want(N1);
        d.absent = true;
        let err = diff(
            &desired(vec![d]),
            &recorded(vec![]),
            &observed(vec![seen_as(N1, "v1", p)]),
        )
        .unwrap_err();
        assert!(matches!(
            &err.items[0].reason,
            RefusalReason::OtherProviderInVapi { provider, .. } if provider == p
        ));
    }
}

#[test]
fn other_provider_refusal_no_longer_hints_at_a_delete() {
    for p in OTHER_PROVIDERS {
        for (rows, vapi) in [
            (vec![], vec![seen_as(N1, "v1", p)]),
            (vec![row_of(N1, Some("v1"), p)], vec![seen(N1, "v1")]),
            (vec![row_of(N1, Some("v1"), p)], vec![seen_as(N1, "v1", p)]),
        ] {
            let err = diff(&desired(vec![want(N1)]), &recorded(rows), &observed(vapi)).unwrap_err();
            let hint = err.items[0].reason.hint();
            assert!(
                hint.contains(&format!("vapictl leaves `{p}` numbers alone")),
                "{hint}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The deletion gate's base (defect 2)
// ---------------------------------------------------------------------------------------------

#[test]
fn only_releasable_numbers_count_toward_the_deletion_gate() {
    let mut protected_a = row(N1, Some("v1"));
    protected_a.protected = true;
    let mut protected_b = row("+14155551236", Some("v3"));
    protected_b.protected = true;
    let stale = row("+14155551237", Some("gone"));
    let deletable = row(N2, Some("v2"));
    let vonage = row_of("+14155551238", Some("v4"), "vonage");
    let plan = diff(
        &desired(vec![]),
        &recorded(vec![protected_a, protected_b, stale, deletable, vonage]),
        &observed(vec![
            seen(N1, "v1"),
            seen(N2, "v2"),
            seen("+14155551236", "v3"),
            seen_as("+14155551238", "v4", "vonage"),
        ]),
    )
    .unwrap();
    assert_eq!(plan.implicit_deletes(), 1);
    assert_eq!(
        plan.releasable_count, 1,
        "protected, stale and vonage rows do not count"
    );
    assert_eq!(plan.spec_entries, 0);
    assert!(
        crate::safety::DeleteThreshold::default()
            .check(&plan, None)
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// Rows in other forms than E.164 (defect 3)
// ---------------------------------------------------------------------------------------------

const N3: &str = "+14155557002";
const N3_FORMS: [&str; 6] = [
    "4155557002",
    "+1 415-555-7002",
    "(415) 555-7002",
    "0014155557002",
    "1-415-555-7002",
    "415.555.7002",
];

#[test]
fn another_users_row_in_any_form_makes_the_number_theirs() {
    for form in N3_FORMS {
        let mut rec = recorded(vec![]);
        rec.foreign.insert(form.into(), OTHER);
        let err = diff(
            &desired(vec![want(N3)]),
            &rec,
            &observed(vec![seen(N3, "v1")]),
        )
        .unwrap_err();
        assert!(
            matches!(&err.items[0].reason, RefusalReason::AnotherUsersNumber { user, .. } if *user == OTHER),
            "{form}: {err}"
        );
        assert!(err.to_string().contains(form), "{err}");
    }
}

#[test]
fn another_users_row_with_the_vapi_id_makes_the_number_theirs() {
    let mut rec = recorded(vec![]);
    rec.foreign_vapi_ids.insert("v1".into(), OTHER);
    let err = diff(
        &desired(vec![want(N3)]),
        &rec,
        &observed(vec![seen(N3, "v1")]),
    )
    .unwrap_err();
    assert!(matches!(
        err.items[0].reason,
        RefusalReason::AnotherUsersNumber { .. }
    ));
}

#[test]
fn owners_row_in_another_form_is_updated_in_place_and_canonicalized() {
    for form in N3_FORMS {
        let r = row(form, Some("v1"));
        let row_id = r.id;
        let plan = diff(
            &desired(vec![want(N3)]),
            &recorded(vec![r]),
            &observed(vec![seen(N3, "v1")]),
        )
        .unwrap();
        let c = only(&plan);
        assert_eq!(c.action, Action::Update, "{form}");
        assert!(matches!(c.vapi, VapiStep::None), "{form}: nothing to PATCH");
        let RowStep::Update { row_id: id, values } = &c.row else {
            panic!("{form}: {:?}", c.row)
        };
        assert_eq!(*id, row_id);
        assert_eq!(values.phone_number, N3);
        let f = c.fields.iter().find(|f| f.field == "phoneNumber").unwrap();
        assert_eq!(f.before.as_deref(), Some(form));
        assert_eq!(f.after.as_deref(), Some(N3));
        assert_eq!(f.cause, Cause::DatabaseEditedOutOfBand);
    }
}

#[test]
fn owners_row_in_another_form_removed_from_the_spec_is_one_delete() {
    let plan = diff(
        &desired(vec![]),
        &recorded(vec![row("(415) 555-7002", Some("v1"))]),
        &observed(vec![seen(N3, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(c.action, Action::Delete);
    assert!(plan.unmanaged.is_empty());
}

#[test]
fn owners_row_matched_by_vapi_id_when_its_number_is_unreadable() {
    let plan = diff(
        &desired(vec![want(N3)]),
        &recorded(vec![row("call 415", Some("v1"))]),
        &observed(vec![seen(N3, "v1")]),
    )
    .unwrap();
    assert_eq!(only(&plan).action, Action::Update);
}

#[test]
fn owners_unreadable_row_is_left_alone() {
    let plan = diff(
        &desired(vec![]),
        &recorded(vec![row("n/a", None)]),
        &observed(vec![]),
    )
    .unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.out_of_scope.len(), 1);
}

#[test]
fn two_rows_of_the_owner_for_one_number_are_refused() {
    let err = diff(
        &desired(vec![want(N3)]),
        &recorded(vec![row(N3, Some("v1")), row("4155557002", Some("v1"))]),
        &observed(vec![seen(N3, "v1")]),
    )
    .unwrap_err();
    assert!(matches!(
        err.items[0].reason,
        RefusalReason::DuplicateRows { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Causes (defect 9)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_row_edited_by_hand_is_a_database_edit() {
    let mut r = row(N1, Some("v1"));
    r.friendly_name = Some("Edited in the app".into());
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![r]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(c.cause, Cause::DatabaseEditedOutOfBand);
    assert!(matches!(c.vapi, VapiStep::None));
    assert_eq!(c.fields[0].field, "friendlyName");
    assert_eq!(c.fields[0].cause, Cause::DatabaseEditedOutOfBand);
}

#[test]
fn server_and_sms_added_in_the_spec_are_spec_edits() {
    let mut d = want(N1);
    d.server = Some(ServerConfig::with_url("https://x.test/hook"));
    d.sms_enabled = false;
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![seen(N1, "v1")]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(c.cause, Cause::SpecEdit);
    assert!(
        c.fields.iter().all(|f| f.cause == Cause::SpecEdit),
        "{:?}",
        c.fields
    );
}

#[test]
fn server_set_in_the_dashboard_is_a_vapi_edit() {
    let mut o = seen(N1, "v1");
    o.server = Some(ServerConfig::with_url("https://elsewhere.test"));
    let plan = diff(
        &desired(vec![want(N1)]),
        &recorded(vec![row(N1, Some("v1"))]),
        &observed(vec![o]),
    )
    .unwrap();
    assert_eq!(only(&plan).cause, Cause::VapiEditedOutOfBand);
}

// ---------------------------------------------------------------------------------------------
// Refusals point at the field (defect 11)
// ---------------------------------------------------------------------------------------------

#[test]
fn assistant_refusals_point_at_the_assistant_field() {
    let mut rec = recorded(vec![]);
    let mut obs = observed(vec![]);
    with_assistants(&mut rec, &mut obs);
    for reference in ["nope", "their-bot"] {
        let mut d = want(N1);
        d.assistant = Some(reference.into());
        let err = diff(&desired(vec![d]), &rec, &obs).unwrap_err();
        let at = err.items[0].at.as_ref().unwrap();
        assert_eq!(at.path, "phoneNumbers[0].assistant");
        assert_eq!((at.location.line, at.location.column), (5, 16));
        let text = err.to_string();
        assert!(
            text.contains("spec.yaml:5:16: `phoneNumbers[0].assistant`: "),
            "{text}"
        );
        assert!(text.contains("\n  hint: "), "{text}");
    }
}

#[test]
fn number_refusals_point_at_the_number_field() {
    let mut rec = recorded(vec![]);
    rec.foreign.insert(N1.into(), OTHER);
    let err = diff(&desired(vec![want(N1)]), &rec, &observed(vec![])).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.yaml:3:13: `phoneNumbers[0].number`: ")
    );
}

// ---------------------------------------------------------------------------------------------
// Other users' numbers are counted, never shown (defect 12)
// ---------------------------------------------------------------------------------------------

#[test]
fn other_users_numbers_are_counted_not_listed() {
    let mut rec = recorded(vec![]);
    rec.foreign.insert("4155551235".into(), OTHER);
    rec.foreign_vapi_ids.insert("v9".into(), OTHER);
    let plan = diff(
        &desired(vec![]),
        &rec,
        &observed(vec![
            seen(N2, "v2"),
            seen("+14155559999", "v9"),
            seen("+14155550000", "v0"),
        ]),
    )
    .unwrap();
    assert_eq!(plan.other_users_count, 2);
    assert_eq!(plan.unmanaged.len(), 1);
    assert_eq!(plan.unmanaged[0].id, "v0");
}

fn hook(url: &str) -> Option<ServerConfig> {
    Some(ServerConfig::with_url(url))
}

/// A row that records what vapictl applied to `server` and `smsEnabled` for `d`.
fn row_applied(d: &DesiredNumber) -> PhoneRow {
    PhoneRow {
        applied: Some(fields::Applied::of(d).to_json()),
        ..row(d.number.as_str(), Some("v1"))
    }
}

#[test]
fn a_server_changed_in_the_spec_is_a_spec_edit_and_is_recorded() {
    let mut before = want(N1);
    before.server = hook("https://a.test/hook");
    let mut after = want(N1);
    after.server = hook("https://b.test/hook");
    let mut o = seen(N1, "v1");
    o.server = before.server.clone();
    let plan = diff(
        &desired(vec![after.clone()]),
        &recorded(vec![row_applied(&before)]),
        &observed(vec![o]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(c.cause, Cause::SpecEdit);
    let RowStep::Update { values, .. } = &c.row else {
        panic!("what was applied is recorded: {:?}", c.row)
    };
    assert_eq!(values.applied, Some(fields::Applied::of(&after).to_json()));
}

#[test]
fn a_server_changed_in_vapi_is_a_vapi_edit_and_the_row_stays() {
    let mut d = want(N1);
    d.server = hook("https://a.test/hook");
    d.sms_enabled = false;
    let mut o = seen(N1, "v1");
    o.server = hook("https://elsewhere.test");
    o.sms_enabled = Some(true);
    let plan = diff(
        &desired(vec![d.clone()]),
        &recorded(vec![row_applied(&d)]),
        &observed(vec![o]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(c.cause, Cause::VapiEditedOutOfBand);
    assert!(
        c.fields
            .iter()
            .all(|f| f.cause == Cause::VapiEditedOutOfBand)
    );
    assert!(matches!(c.row, RowStep::None), "{:?}", c.row);
}

#[test]
fn a_number_also_recorded_for_another_user_is_kept_not_released() {
    let mut rec = recorded(vec![row(N1, Some("v1"))]);
    rec.foreign.insert("(415) 555-1234".into(), OTHER);
    let plan = diff(&desired(vec![]), &rec, &observed(vec![seen(N1, "v1")])).unwrap();
    assert!(plan.is_empty(), "{:#?}", plan.changes);
    assert_eq!(plan.kept.len(), 1);
    assert!(plan.unmanaged.is_empty() && plan.other_users_count == 0);
}

fn server_with(url: &str, f: impl FnOnce(&mut ServerConfig)) -> Option<ServerConfig> {
    let mut s = ServerConfig::with_url(url);
    f(&mut s);
    Some(s)
}

fn raw_server(o: &mut ObservedNumber, raw: serde_json::Value) {
    let serde_json::Value::Object(m) = raw else {
        panic!("an object")
    };
    o.server_raw = Some(m);
}

#[test]
fn server_sub_fields_the_spec_does_not_declare_are_not_owned() {
    let mut d = want(N1);
    d.server = hook("https://a.test/hook");
    let mut o = seen(N1, "v1");
    o.server = server_with("https://a.test/hook", |s| {
        s.headers = Some(BTreeMap::from([(
            "X-Env".to_string(),
            crate::state::HeaderValue::Plain("prod".into()),
        )]));
        s.backoff_plan =
            Some(serde_json::json!({"type": "fixed", "maxRetries": 1, "baseDelaySeconds": 1}));
    });
    let plan = diff(
        &desired(vec![d.clone()]),
        &recorded(vec![row_applied(&d)]),
        &observed(vec![o]),
    )
    .unwrap();
    assert!(plan.is_empty(), "{:#?}", plan.changes);
}

#[test]
fn a_server_patch_starts_from_vapis_object_and_shows_each_sub_field() {
    let mut before = want(N1);
    before.server = hook("https://a.test/hook");
    let mut after = want(N1);
    after.server = server_with("https://a.test/hook", |s| s.timeout_seconds = Some(45));
    let mut o = seen(N1, "v1");
    o.server = hook("https://a.test/hook");
    raw_server(
        &mut o,
        serde_json::json!({"url": "https://a.test/hook", "headers": {"X": "y"}, "future": 1}),
    );
    let plan = diff(
        &desired(vec![after]),
        &recorded(vec![row_applied(&before)]),
        &observed(vec![o.clone()]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(
        c.fields.iter().map(|f| f.field).collect::<Vec<_>>(),
        vec!["server.timeoutSeconds"]
    );
    assert_eq!(c.fields[0].cause, Cause::SpecEdit);
    let VapiStep::Update { patch, .. } = &c.vapi else {
        panic!("{:?}", c.vapi)
    };
    assert_eq!(patch.server_base, o.server_raw);
    assert!(patch.server_clear.is_empty());
}

#[test]
fn a_sub_field_vapictl_applied_and_the_spec_dropped_is_removed_visibly() {
    let mut before = want(N1);
    before.server = server_with("https://a.test/hook", |s| {
        s.static_ip_addresses_enabled = Some(true)
    });
    let mut after = want(N1);
    after.server = hook("https://a.test/hook");
    let mut o = seen(N1, "v1");
    o.server = before.server.clone();
    let plan = diff(
        &desired(vec![after]),
        &recorded(vec![row_applied(&before)]),
        &observed(vec![o]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(c.fields[0].field, "server.staticIpAddressesEnabled");
    assert_eq!(c.fields[0].after, None);
    let VapiStep::Update { patch, .. } = &c.vapi else {
        panic!("{:?}", c.vapi)
    };
    assert_eq!(
        patch.server_clear,
        vec!["staticIpAddressesEnabled".to_string()]
    );
}

#[test]
fn a_fallback_destination_is_owned_when_declared_or_applied_before() {
    let fb = serde_json::json!({"type": "number", "number": "+14155550199"});
    // In Vapi only, never declared: left alone.
    let d = want(N1);
    let mut o = seen(N1, "v1");
    o.fallback_destination = Some(fb.clone());
    let plan = diff(
        &desired(vec![d.clone()]),
        &recorded(vec![row_applied(&d)]),
        &observed(vec![o.clone()]),
    )
    .unwrap();
    assert!(plan.is_empty(), "{:#?}", plan.changes);
    // Applied before, now dropped from the spec: removed.
    let mut before = want(N1);
    before.fallback_destination = Some(fb.clone());
    let plan = diff(
        &desired(vec![d]),
        &recorded(vec![row_applied(&before)]),
        &observed(vec![o]),
    )
    .unwrap();
    let c = only(&plan);
    assert_eq!(c.fields[0].field, "fallbackDestination");
    assert_eq!(c.fields[0].cause, Cause::SpecEdit);
    let VapiStep::Update { patch, .. } = &c.vapi else {
        panic!("{:?}", c.vapi)
    };
    assert_eq!(patch.fallback_destination, Some(None));
}

#[test]
fn a_blocked_number_is_reported_without_a_change() {
    let d = want(N1);
    let mut o = seen(N1, "v1");
    o.status = Some("blocked".into());
    let plan = diff(
        &desired(vec![d.clone()]),
        &recorded(vec![row_applied(&d)]),
        &observed(vec![o]),
    )
    .unwrap();
    assert!(plan.is_empty());
    assert!(plan.has_drift());
    assert_eq!(plan.blocked[0].number, N1);
    assert!(plan.warnings[0].contains("blocked"), "{:?}", plan.warnings);
}
