//! The field comparison: every field a number has is compared in one place, [`judge`], which
//! yields whether Vapi differs, whether the row differs, the cause and where the change goes.
//!
//! | Vapi differs | row differs | cause |
//! |---|---|---|
//! | yes | yes (or not stored in the row) and the spec sets what Vapi lacks | spec edit |
//! | yes | yes | spec edit: the spec moved away from what both recorded |
//! | yes | no | changed in Vapi outside vapictl |
//! | no | yes | changed in the database outside vapictl (fields Vapi also has) |
//! | — | yes | row-only fields: spec edit (`notes`, `protected`), or what the row failed to keep up with |
//!
//! `server` and `smsEnabled` have no column of the application's, so vapictl keeps what it last
//! applied to them in its own column, `vapictl_applied` ([`Applied`]): a spec that differs from
//! it is a spec edit; a spec that equals it while Vapi differs means an edit in Vapi. Rows that
//! vapictl has not written since that column exists have no record; for them, when Vapi holds
//! nothing of its own (no `server`; `smsEnabled` at Vapi's default `true`) and the spec sets a
//! value, the spec added it (spec edit); otherwise someone set it in Vapi.

use serde::{Deserialize, Serialize};

use crate::plan::{Cause, FieldChange, Target};
use crate::state::{DesiredNumber, ServerConfig};

/// Vapi's default webhook timeout: an observed `20` equals an unset `timeoutSeconds`.
const DEFAULT_SERVER_TIMEOUT: u32 = 20;

/// `server` as compared: an explicit default timeout equals an unset one.
pub(crate) fn normalized_server(s: Option<&ServerConfig>) -> Option<ServerConfig> {
    s.map(|s| ServerConfig {
        url: s.url.clone(),
        credential_id: s.credential_id.clone(),
        timeout_seconds: s.timeout_seconds.filter(|t| *t != DEFAULT_SERVER_TIMEOUT),
    })
}

/// What vapictl applied to the fields only Vapi keeps, as the row's `vapictl_applied` stores it
/// (JSON: `{"server":…,"smsEnabled":…}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Applied {
    pub server: Option<ServerConfig>,
    pub sms_enabled: bool,
}

impl Applied {
    pub(crate) fn of(d: &DesiredNumber) -> Applied {
        Applied {
            server: normalized_server(d.server.as_ref()),
            sms_enabled: d.sms_enabled,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    /// `None` for a row without a record (or one that cannot be read: treated alike).
    pub(crate) fn of_row(stored: Option<&str>) -> Option<Applied> {
        serde_json::from_str(stored?).ok()
    }
}

/// Where a field lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    /// In Vapi and in a column of the row (`name`/`friendly_name`, …).
    VapiAndRow,
    /// In Vapi only (`server`, `smsEnabled`).
    VapiOnly,
    /// In the row only (`notes`, `protected`, bookkeeping columns).
    RowOnly,
}

/// One field: its names in Vapi and in the row, and where it lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub vapi_name: &'static str,
    pub row_name: &'static str,
    pub home: Home,
    /// For row-only fields: why the row would differ.
    pub row_cause: Cause,
}

const fn both(vapi_name: &'static str, row_name: &'static str) -> Field {
    Field {
        vapi_name,
        row_name,
        home: Home::VapiAndRow,
        row_cause: Cause::DatabaseEditedOutOfBand,
    }
}

const fn vapi_only(name: &'static str) -> Field {
    Field {
        vapi_name: name,
        row_name: name,
        home: Home::VapiOnly,
        row_cause: Cause::SpecEdit,
    }
}

const fn row_only(name: &'static str, row_cause: Cause) -> Field {
    Field {
        vapi_name: name,
        row_name: name,
        home: Home::RowOnly,
        row_cause,
    }
}

pub(crate) const NAME: Field = both("name", "friendlyName");
pub(crate) const ASSISTANT: Field = both("assistantId", "assignedAssistantId");
pub(crate) const ACCOUNT_SID: Field = both("twilioAccountSid", "twilioAccountSid");
pub(crate) const SERVER: Field = vapi_only("server");
pub(crate) const SMS_ENABLED: Field = vapi_only("smsEnabled");
pub(crate) const NOTES: Field = row_only("notes", Cause::SpecEdit);
pub(crate) const PROTECTED: Field = row_only("protected", Cause::SpecEdit);
/// The row keeps Vapi's credential id; it differs when the row has not kept up.
pub(crate) const CREDENTIAL: Field = row_only("vapiCredentialId", Cause::DatabaseEditedOutOfBand);
/// The application stored the number in another form than E.164; it is canonicalized.
pub(crate) const PHONE_NUMBER: Field = row_only("phoneNumber", Cause::DatabaseEditedOutOfBand);

/// How the number is being planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// In Vapi, not recorded: every differing field is taken over.
    Adopt,
    /// In Vapi and recorded.
    Update,
}

/// One field as the three views have it. Values are display strings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Views {
    /// What Vapi has, when Vapi has this field.
    pub vapi: Option<Option<String>>,
    pub vapi_differs: bool,
    /// What the row has, when there is a row and it stores this field.
    pub row: Option<Option<String>>,
    pub row_differs: bool,
    /// Vapi holds nothing of its own (no value, or its default) and the spec sets one.
    pub spec_sets_what_vapi_lacks: bool,
    /// For fields only Vapi keeps: whether the spec differs from what vapictl last applied,
    /// when that is recorded.
    pub spec_changed: Option<bool>,
    pub desired: Option<String>,
}

/// The outcome of comparing one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub vapi_differs: bool,
    pub row_differs: bool,
    pub cause: Cause,
    pub target: Target,
    pub change: FieldChange,
}

/// Compares one field of a number that exists in Vapi; `None` when nothing differs.
pub(crate) fn judge(field: Field, mode: Mode, v: Views) -> Option<Verdict> {
    let vapi_differs = v.vapi.is_some() && v.vapi_differs;
    let row_differs = v.row.is_some() && v.row_differs;
    let (cause, target) = match (mode, field.home) {
        (Mode::Adopt, Home::VapiAndRow) if vapi_differs => (Cause::AdoptUnmanaged, Target::Both),
        (Mode::Adopt, Home::VapiOnly) if vapi_differs => (Cause::AdoptUnmanaged, Target::Vapi),
        (Mode::Adopt, Home::RowOnly) if v.desired.is_some() => {
            (Cause::AdoptUnmanaged, Target::Database)
        }
        (Mode::Adopt, _) => return None,
        (Mode::Update, Home::VapiAndRow) => match (vapi_differs, row_differs) {
            (true, true) => (Cause::SpecEdit, Target::Both),
            (true, false) => (Cause::VapiEditedOutOfBand, Target::Vapi),
            (false, true) => (Cause::DatabaseEditedOutOfBand, Target::Database),
            (false, false) => return None,
        },
        (Mode::Update, Home::VapiOnly) if vapi_differs => {
            let spec_edit = v.spec_changed.unwrap_or(v.spec_sets_what_vapi_lacks);
            if spec_edit {
                (Cause::SpecEdit, Target::Vapi)
            } else {
                (Cause::VapiEditedOutOfBand, Target::Vapi)
            }
        }
        (Mode::Update, Home::RowOnly) if row_differs => (field.row_cause, Target::Database),
        (Mode::Update, _) => return None,
    };
    let (name, before) = match target {
        Target::Database => (field.row_name, v.row.clone().flatten()),
        _ => (field.vapi_name, v.vapi.clone().flatten()),
    };
    let before = if mode == Mode::Adopt && field.home == Home::RowOnly {
        None
    } else {
        before
    };
    Some(Verdict {
        vapi_differs,
        row_differs,
        cause,
        target,
        change: FieldChange {
            field: name,
            target,
            before,
            after: v.desired,
            sensitive: false,
            note: None,
            cause,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(vapi_differs: bool, row_differs: bool) -> Views {
        Views {
            vapi: Some(Some("v".into())),
            vapi_differs,
            row: Some(Some("r".into())),
            row_differs,
            desired: Some("d".into()),
            ..Views::default()
        }
    }

    #[test]
    fn each_combination_has_one_cause() {
        let j = |vd, rd| judge(NAME, Mode::Update, views(vd, rd)).map(|v| (v.cause, v.target));
        assert_eq!(j(true, true), Some((Cause::SpecEdit, Target::Both)));
        assert_eq!(
            j(true, false),
            Some((Cause::VapiEditedOutOfBand, Target::Vapi))
        );
        assert_eq!(
            j(false, true),
            Some((Cause::DatabaseEditedOutOfBand, Target::Database))
        );
        assert_eq!(j(false, false), None);
    }

    #[test]
    fn a_database_edit_shows_the_row_column_and_its_value() {
        let v = judge(NAME, Mode::Update, views(false, true)).unwrap();
        assert_eq!(v.change.field, "friendlyName");
        assert_eq!(v.change.before.as_deref(), Some("r"));
    }

    #[test]
    fn vapi_only_fields_added_in_the_spec_are_spec_edits() {
        let mut v = views(true, false);
        v.row = None;
        v.spec_sets_what_vapi_lacks = true;
        assert_eq!(
            judge(SERVER, Mode::Update, v.clone()).unwrap().cause,
            Cause::SpecEdit
        );
        v.spec_sets_what_vapi_lacks = false;
        assert_eq!(
            judge(SMS_ENABLED, Mode::Update, v.clone()).unwrap().cause,
            Cause::VapiEditedOutOfBand
        );
        // What vapictl last applied decides when it is recorded.
        v.spec_changed = Some(true);
        assert_eq!(
            judge(SERVER, Mode::Update, v.clone()).unwrap().cause,
            Cause::SpecEdit
        );
        v.spec_changed = Some(false);
        v.spec_sets_what_vapi_lacks = true;
        assert_eq!(
            judge(SERVER, Mode::Update, v).unwrap().cause,
            Cause::VapiEditedOutOfBand
        );
    }
}
