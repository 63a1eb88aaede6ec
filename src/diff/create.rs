//! A number in the spec that Vapi does not have: create it, or re-create it when it was
//! deleted by hand. Every field is set.

use super::*;

/// Not in Vapi: create (new) or re-create (deleted by hand). Every field is set.
pub(super) fn plan_create(
    d: &DesiredNumber,
    r: Option<&PhoneRow>,
    row_values: RowWrite,
    route: &Route,
) -> Change {
    let (action, cause) = match r.and_then(|r| r.vapi_phone_id.as_ref()) {
        Some(_) => (Action::Recreate, Cause::DeletedInVapi),
        None => (Action::Create, Cause::NewInSpec),
    };
    let set = |field, target, after: Option<String>| FieldChange {
        field,
        target,
        before: None,
        after,
        sensitive: false,
        note: None,
        cause,
    };
    let mut fields = vec![set("name", Target::Both, Some(d.name.clone()))];
    if let Some(a) = &d.assistant {
        fields.push(set("assistant", Target::Both, Some(a.clone())));
    }
    if let Some(q) = &d.squad {
        fields.push(set("squad", Target::Both, Some(q.clone())));
    }
    if d.server.is_some() {
        fields.push(set("server", Target::Vapi, show_server(d.server.as_ref())));
    }
    fields.push(set(
        "smsEnabled",
        Target::Vapi,
        Some(d.sms_enabled.to_string()),
    ));
    if let Some(f) = &d.fallback_destination {
        fields.push(set(
            "fallbackDestination",
            Target::Vapi,
            Some(f.to_string()),
        ));
    }
    if let Some(h) = &d.hooks {
        fields.push(set("hooks", Target::Vapi, Some(h.to_string())));
    }
    fields.push(set(
        "twilioAccountSid",
        Target::Both,
        Some(d.twilio.account_sid.clone()),
    ));
    if let Some(k) = &d.twilio.api_key {
        fields.push(set("twilioApiKey", Target::Both, Some(k.clone())));
    }
    fields.push(FieldChange {
        sensitive: true,
        note: Some("set".into()),
        ..set(
            if d.twilio.api_key.is_some() {
                "twilioApiSecret"
            } else {
                "twilioAuthToken"
            },
            Target::Both,
            None,
        )
    });
    if let Some(n) = &d.notes {
        fields.push(set("notes", Target::Database, Some(n.clone())));
    }
    if let Some(r) = r
        && r.phone_number != d.number.as_str()
    {
        fields.push(FieldChange {
            before: Some(r.phone_number.clone()),
            cause: Cause::DatabaseEditedOutOfBand,
            ..set("phoneNumber", Target::Database, Some(d.number.to_string()))
        });
    }
    let row = match r {
        Some(r) => RowStep::Update {
            row_id: r.id,
            values: Box::new(row_values),
        },
        None => RowStep::Insert(Box::new(row_values)),
    };
    Change {
        number: d.number.as_str().to_string(),
        action,
        cause,
        fields,
        vapi: VapiStep::Create(Box::new(VapiCreate {
            number: d.number.as_str().to_string(),
            name: d.name.clone(),
            assistant_id: route.assistant_vapi_id(),
            squad_id: route.squad_vapi_id(),
            server: d.server.clone(),
            sms_enabled: d.sms_enabled,
            fallback_destination: d.fallback_destination.clone(),
            hooks: d.hooks.clone(),
            account_sid: d.twilio.account_sid.clone(),
            token: d.twilio.auth_token.clone(),
            api_key: d.twilio.api_key.clone(),
        })),
        row,
        observed: None,
        recorded: r.cloned(),
    }
}
