//! A number the spec no longer has (or marks `absent: true`): release it from Vapi and delete
//! its row, or only remove a stale row.

use super::*;

pub(super) fn plan_absent(
    key: &str,
    r: Option<&PhoneRow>,
    o: Option<&ObservedNumber>,
    cause: Cause,
) -> Option<Change> {
    let before_name = o
        .and_then(|o| o.name.clone())
        .or_else(|| r.and_then(|r| r.friendly_name.clone()));
    let fields = vec![FieldChange {
        field: "name",
        target: Target::Both,
        before: before_name,
        after: None,
        sensitive: false,
        note: None,
        cause,
    }];
    let row = r.map_or(RowStep::None, |r| RowStep::Delete { row_id: r.id });
    let (action, cause, vapi) = match o {
        Some(o) => (Action::Delete, cause, VapiStep::Delete { id: o.id.clone() }),
        None if r.is_some() => (Action::RemoveRow, Cause::StaleDatabaseRow, VapiStep::None),
        None => return None,
    };
    Some(Change {
        number: key.to_string(),
        action,
        cause,
        fields,
        vapi,
        row,
        observed: o.cloned(),
        recorded: r.cloned(),
    })
}
