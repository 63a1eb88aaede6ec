//! A number the spec has and Vapi or the owner's row knows: adopt it, update what differs in
//! Vapi and in the row (each field judged once, in `fields.rs`), re-point a row to the copy in
//! use, or refuse.

use super::*;

pub(super) fn plan_present(
    d: &DesiredNumber,
    r: Option<&PhoneRow>,
    o: Option<&ObservedNumber>,
    route: &Route,
    observed: &ObservedState,
) -> Option<Change> {
    let assistant_vapi_id = route.assistant_vapi_id();
    let assistant_row_id = route.assistant.as_ref().map(|(row, _)| *row);
    let squad_vapi_id = route.squad_vapi_id();
    let squad_row_id = route.squad.as_ref().map(|(row, _)| *row);
    let number = d.number.as_str().to_string();
    let token = &d.twilio.auth_token;
    let repoint = match (r, o) {
        (Some(r), Some(o)) => repointed(r, o, observed),
        _ => None,
    };

    // What the row should hold afterwards (the Vapi id is filled in below or by the applier).
    let mut row_values = RowWrite {
        phone_number: number.clone(),
        friendly_name: d.name.clone(),
        vapi_phone_id: o.map(|o| o.id.clone()),
        vapi_credential_id: o
            .and_then(|o| o.credential_id.clone())
            .or_else(|| r.and_then(|r| r.vapi_credential_id.clone())),
        twilio_account_sid: d.twilio.account_sid.clone(),
        twilio_auth_token: token.armored.clone(),
        api_key: d.twilio.api_key.clone(),
        api_secret: d.twilio.api_key.as_ref().map(|_| token.armored.clone()),
        token_digest: None,
        assigned_assistant_id: assistant_row_id,
        assigned_squad_id: squad_row_id,
        notes: d.notes.clone(),
        protected: d.protected,
        applied: Some(Applied::of(d).to_json()),
    };
    let applied = Applied::of(d);
    let last_applied = r.and_then(|r| Applied::of_row(r.applied.as_deref()));

    // The token: unchanged when the row holds the same ciphertext, or a digest of the same
    // plaintext (re-encrypted to other recipients) — for the copy the row records.
    // A change of form (auth token ↔ API key) or of API key sends the secret again.
    let form_changed = r.is_some_and(|r| r.api_key != d.twilio.api_key);
    let row_token = match r {
        None => TokenState::Unknown,
        Some(_) if form_changed => TokenState::Rotated,
        Some(r) => {
            if r.secret_ciphertext() == Some(token.armored.as_str()) {
                TokenState::Same
            } else {
                match (&token.plaintext, r.token_digest.as_deref()) {
                    (Some(p), Some(dg)) if digest_matches(dg, p) => TokenState::ReEncrypted,
                    (Some(_), _) => TokenState::Rotated,
                    (None, _) => TokenState::Unverifiable,
                }
            }
        }
    };
    if matches!(row_token, TokenState::Same | TokenState::ReEncrypted) {
        row_values.token_digest = r.and_then(|r| r.token_digest.clone());
    }
    let token_state = if repoint.is_some() {
        TokenState::NotOnThisCopy
    } else {
        row_token
    };

    let Some(o) = o else {
        return Some(plan_create(d, r, row_values, route));
    };

    // In Vapi: each field compared once (see `fields`).
    let mode = if r.is_some() {
        Mode::Update
    } else {
        Mode::Adopt
    };
    let show = |s: &str| Some(s.to_string());
    let mut fields = Vec::new();
    let mut patch = VapiPatch::default();
    let mut row_differs = false;
    let mut take = |v: Option<fields::Verdict>, fields: &mut Vec<FieldChange>| {
        let v = v?;
        row_differs |= v.row_differs;
        fields.push(v.change);
        Some(v.vapi_differs)
    };

    let name = judge(
        fields::NAME,
        mode,
        Views {
            vapi: Some(o.name.clone()),
            vapi_differs: o.name.as_deref() != Some(d.name.as_str()),
            row: r.map(|r| r.friendly_name.clone()),
            row_differs: r.is_some_and(|r| r.friendly_name.as_deref() != Some(&d.name)),
            desired: show(&d.name),
            ..Views::default()
        },
    );
    if take(name, &mut fields) == Some(true) {
        patch.name = Some(d.name.clone());
    }
    // One routing target: an assistant, a squad or nothing. Each is compared like any field
    // kept in Vapi and in the row (a target set in the dashboard shows with its cause), and
    // when either differs in Vapi both are sent, so that Vapi gets `squadId` with
    // `assistantId: null` or the reverse, never both.
    let mut route_differs = false;
    for (field, vapi, vapi_id, row, row_id) in [
        (
            fields::ASSISTANT,
            &o.assistant_id,
            &assistant_vapi_id,
            r.map(|r| r.assigned_assistant_id),
            assistant_row_id,
        ),
        (
            fields::SQUAD,
            &o.squad_id,
            &squad_vapi_id,
            r.map(|r| r.assigned_squad_id),
            squad_row_id,
        ),
    ] {
        let v = judge(
            field,
            mode,
            Views {
                vapi: Some(vapi.clone()),
                vapi_differs: vapi != vapi_id,
                row: row.map(|id| id.map(|u| u.to_string())),
                row_differs: row.is_some_and(|id| id != row_id),
                desired: vapi_id.clone(),
                ..Views::default()
            },
        )
        .map(|mut v| {
            // The row holds the target's row id; the Vapi side its Vapi id.
            if v.target == Target::Database {
                v.change.after = row_id.map(|u| u.to_string());
            }
            v
        });
        route_differs |= take(v, &mut fields) == Some(true);
    }
    if route_differs {
        patch.assistant_id = Some(assistant_vapi_id.clone());
        patch.squad_id = Some(squad_vapi_id.clone());
    }
    match (&d.server, &o.server) {
        // Both have a server: each sub-field the spec owns is compared and shown on its own, and
        // the PATCH starts from Vapi's object, so that what the spec does not own is kept.
        (Some(ds), Some(os)) => {
            let last = last_applied.as_ref().map(|l| l.server.as_ref());
            let mut send = false;
            let mut clear = Vec::new();
            for sub in fields::server_sub_fields(ds, os, last) {
                if !sub.owned || !sub.differs {
                    continue;
                }
                if !sub.declared && sub.vapi.is_some() && sub.field.home == fields::Home::VapiOnly {
                    clear.push(sub.key.to_string());
                }
                let v = judge(
                    sub.field,
                    mode,
                    Views {
                        vapi: Some(sub.vapi.clone()),
                        vapi_differs: true,
                        spec_sets_what_vapi_lacks: sub.vapi_lacks,
                        spec_changed: sub.spec_changed,
                        desired: sub.desired.clone(),
                        ..Views::default()
                    },
                );
                // A rotated secret header looks the same on both sides: say what changed.
                let v = v.map(|mut v| {
                    if sub.key == "headers" && v.change.before == v.change.after {
                        v.change.note = Some("sensitive value changed".into());
                    }
                    v
                });
                send |= take(v, &mut fields) == Some(true);
            }
            if send {
                patch.server = Some(d.server.clone());
                patch.server_base = o.server_raw.clone();
                // `url`, `credentialId` and `timeoutSeconds` are written (or removed) from the
                // spec anyway; only the optional sub-fields need an explicit removal.
                clear.retain(|k| !matches!(k.as_str(), "url" | "credentialId" | "timeoutSeconds"));
                patch.server_clear = clear;
            }
        }
        _ => {
            let server = judge(
                fields::SERVER,
                mode,
                Views {
                    vapi: Some(show_server(o.server.as_ref())),
                    vapi_differs: !server_eq(d.server.as_ref(), o.server.as_ref()),
                    spec_sets_what_vapi_lacks: o.server.is_none() && d.server.is_some(),
                    spec_changed: last_applied.as_ref().map(|l| l.server != applied.server),
                    desired: show_server(d.server.as_ref()),
                    ..Views::default()
                },
            );
            if take(server, &mut fields) == Some(true) {
                patch.server = Some(d.server.clone());
                patch.server_base = o.server_raw.clone();
            }
        }
    }
    // `fallbackDestination` and `hooks`: owned as a whole when the spec declares them, or when
    // vapictl applied them before (then the spec's omission removes them, visibly).
    let empty_hooks = serde_json::Value::Array(Vec::new());
    for (field, want, have, recorded) in [
        (
            fields::FALLBACK_DESTINATION,
            d.fallback_destination.as_ref(),
            o.fallback_destination.as_ref(),
            last_applied
                .as_ref()
                .map(|l| l.fallback_destination.as_ref()),
        ),
        (
            fields::HOOKS,
            d.hooks.as_ref(),
            o.hooks.as_ref().filter(|h| **h != empty_hooks),
            last_applied.as_ref().map(|l| l.hooks.as_ref()),
        ),
    ] {
        let owned = want.is_some() || recorded.flatten().is_some();
        let want_cmp = want.filter(|w| **w != empty_hooks);
        if !owned || want_cmp == have {
            continue;
        }
        let v = judge(
            field,
            mode,
            Views {
                vapi: Some(fields::show_json(have)),
                vapi_differs: true,
                spec_sets_what_vapi_lacks: have.is_none() && want_cmp.is_some(),
                spec_changed: recorded.map(|r| r != want),
                desired: fields::show_json(want),
                ..Views::default()
            },
        );
        if take(v, &mut fields) == Some(true) {
            let value = Some(want.cloned());
            if field.vapi_name == fields::HOOKS.vapi_name {
                patch.hooks = value;
            } else {
                patch.fallback_destination = value;
            }
        }
    }
    let sms = judge(
        fields::SMS_ENABLED,
        mode,
        Views {
            vapi: Some(Some(o.sms_enabled_effective().to_string())),
            vapi_differs: o.sms_enabled_effective() != d.sms_enabled,
            // Vapi's default is `true`: a spec that turns SMS off sets what Vapi lacks.
            spec_sets_what_vapi_lacks: o.sms_enabled.is_none_or(|s| s) && !d.sms_enabled,
            spec_changed: last_applied
                .as_ref()
                .map(|l| l.sms_enabled != applied.sms_enabled),
            desired: Some(d.sms_enabled.to_string()),
            ..Views::default()
        },
    );
    if take(sms, &mut fields) == Some(true) {
        patch.sms_enabled = Some(d.sms_enabled);
    }
    let sid = judge(
        fields::ACCOUNT_SID,
        mode,
        Views {
            vapi: Some(o.twilio_account_sid.clone()),
            vapi_differs: o.twilio_account_sid.as_deref() != Some(d.twilio.account_sid.as_str()),
            row: r.map(|r| r.twilio_account_sid.clone()),
            row_differs: r
                .is_some_and(|r| r.twilio_account_sid.as_deref() != Some(&d.twilio.account_sid)),
            desired: show(&d.twilio.account_sid),
            ..Views::default()
        },
    );
    if take(sid, &mut fields) == Some(true) {
        patch.account_sid = Some(d.twilio.account_sid.clone());
    }

    // Vapi never shows the token: send it when adopting (unknown), when it was rotated, or when
    // the copy in use is not the one the row records.
    let secret = |note: &str, target, cause| FieldChange {
        field: "twilioAuthToken",
        target,
        before: None,
        after: None,
        sensitive: true,
        note: Some(note.into()),
        cause,
    };
    let (token_field, send) = match token_state {
        TokenState::Unknown => (
            Some(secret(
                "set; Vapi does not show the current value",
                Target::Both,
                Cause::AdoptUnmanaged,
            )),
            true,
        ),
        TokenState::NotOnThisCopy => (
            Some(secret(
                "set; this Vapi copy did not get it from vapictl",
                if row_token == TokenState::Same {
                    Target::Vapi
                } else {
                    Target::Both
                },
                repoint.as_ref().map_or(Cause::SpecEdit, |(c, _)| *c),
            )),
            true,
        ),
        TokenState::Rotated => (
            Some(secret(
                "sensitive value changed",
                Target::Both,
                Cause::SpecEdit,
            )),
            true,
        ),
        TokenState::Unverifiable => (
            Some(secret(
                "token changed (cannot verify without key)",
                Target::Both,
                Cause::SpecEdit,
            )),
            true,
        ),
        TokenState::ReEncrypted => (
            Some(secret(
                "re-encrypted, value unchanged",
                Target::Database,
                Cause::SpecEdit,
            )),
            false,
        ),
        TokenState::Same => (None, false),
    };
    let secret_field = if d.twilio.api_key.is_some() {
        "twilioApiSecret"
    } else {
        "twilioAuthToken"
    };
    fields.extend(token_field.map(|f| FieldChange {
        field: secret_field,
        ..f
    }));
    if form_changed {
        let r = r.expect("a form change has a row");
        fields.push(FieldChange {
            field: "twilioApiKey",
            target: Target::Both,
            before: r.api_key.clone(),
            after: d.twilio.api_key.clone(),
            sensitive: false,
            note: None,
            cause: Cause::SpecEdit,
        });
    }
    if send {
        patch.token = Some(token.clone());
        patch.api_key = d.twilio.api_key.clone();
        patch.switch_form = r.is_some_and(|r| r.api_key.is_some() != d.twilio.api_key.is_some());
    }

    // Row-only fields.
    let row_only = |field, before: Option<Option<String>>, differs: bool, after: Option<String>| {
        judge(
            field,
            mode,
            Views {
                row: before,
                row_differs: differs,
                desired: after,
                ..Views::default()
            },
        )
    };
    let notes = row_only(
        fields::NOTES,
        r.map(|r| r.notes.clone()),
        r.is_some_and(|r| r.notes != d.notes),
        d.notes.clone(),
    );
    take(notes, &mut fields);
    let protected = row_only(
        fields::PROTECTED,
        r.map(|r| Some(r.protected.to_string())),
        r.is_some_and(|r| r.protected != d.protected),
        Some(d.protected.to_string()),
    )
    .filter(|_| mode == Mode::Update);
    take(protected, &mut fields);
    if let (Some(r), Some((cause, note))) = (r, &repoint) {
        fields.push(FieldChange {
            field: "vapiPhoneId",
            target: Target::Database,
            before: r.vapi_phone_id.clone(),
            after: Some(o.id.clone()),
            sensitive: false,
            note: Some(note.clone()),
            cause: *cause,
        });
    }
    let credential = row_only(
        fields::CREDENTIAL,
        r.map(|r| r.vapi_credential_id.clone()),
        r.is_some_and(|r| r.vapi_credential_id != row_values.vapi_credential_id),
        row_values.vapi_credential_id.clone(),
    )
    .filter(|_| mode == Mode::Update);
    take(credential, &mut fields);
    // The application's own form of the number becomes E.164: the same number, updated in place.
    let canonical = row_only(
        fields::PHONE_NUMBER,
        r.map(|r| Some(r.phone_number.clone())),
        r.is_some_and(|r| r.phone_number != number),
        Some(number.clone()),
    )
    .filter(|_| mode == Mode::Update);
    take(canonical, &mut fields);
    // (A row written before `vapictl_twilio_api_secret` existed gets it on its next write; that
    // alone is no reason to write.)
    let row_token_differs = r.is_some_and(|r| {
        r.twilio_auth_token.as_deref() != Some(&token.armored)
            || (r.api_secret.is_some() && r.api_secret != row_values.api_secret)
    });
    // A PATCH of a field only Vapi keeps is recorded in the row, so that the next plan can tell
    // a spec edit from an edit in Vapi.
    let record_applied = (patch.server.is_some()
        || patch.sms_enabled.is_some()
        || patch.fallback_destination.is_some()
        || patch.hooks.is_some())
        && last_applied.as_ref() != Some(&applied);

    let row = match r {
        None => RowStep::Insert(Box::new(row_values)),
        Some(r) if row_differs || repoint.is_some() || row_token_differs || record_applied => {
            RowStep::Update {
                row_id: r.id,
                values: Box::new(row_values),
            }
        }
        Some(_) => RowStep::None,
    };
    let vapi = if patch.is_empty() {
        VapiStep::None
    } else {
        VapiStep::Update {
            id: o.id.clone(),
            patch: Box::new(patch),
        }
    };
    if matches!(vapi, VapiStep::None) && matches!(row, RowStep::None) {
        return None;
    }
    let (action, cause) = match mode {
        Mode::Adopt => (Action::Adopt, Cause::AdoptUnmanaged),
        Mode::Update => {
            let cause = fields
                .iter()
                .map(|f| f.cause)
                .min_by_key(|c| cause_rank(*c))
                .unwrap_or(Cause::SpecEdit);
            (Action::Update, cause)
        }
    };
    Some(Change {
        number,
        action,
        cause,
        fields,
        vapi,
        row,
        observed: Some(o.clone()),
        recorded: r.cloned(),
    })
}
