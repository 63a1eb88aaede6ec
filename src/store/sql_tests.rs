//! Tests of the statements and their column list (`sql.rs`).

use super::*;

#[test]
fn an_insert_binds_one_value_per_written_column_and_the_id_last() {
    let sql = insert_row(true);
    assert!(
        sql.starts_with(
            "INSERT INTO phone_numbers (user_id, phone_number, friendly_name, provider, \
             vapi_phone_id, vapi_credential_id, twilio_account_sid, twilio_auth_token, \
             assigned_assistant_id, notes, created_at, updated_at, vapictl_token_digest, \
             vapictl_protected, vapictl_applied, vapictl_twilio_api_key, vapictl_squad_id, \
             vapictl_twilio_api_secret, id) VALUES ($1, $2, $3, 'twilio', $4, "
        ),
        "{sql}"
    );
    assert!(sql.ends_with("$17, $18) RETURNING id"), "{sql}");
    assert!(insert_row(false).ends_with("$17) RETURNING id"));
}

#[test]
fn an_update_never_writes_the_owner_provider_or_creation_time() {
    let sql = update_row();
    for untouched in ["user_id =", "provider", "created_at", "SET id"] {
        assert!(
            !sql.split(" WHERE ").next().unwrap().contains(untouched),
            "{sql}"
        );
    }
    assert!(sql.ends_with("WHERE id = $16 AND user_id = $17"), "{sql}");
}

#[test]
fn values_match_the_statements_placeholders() {
    let app = app();
    let row = row_with_squad(None);
    let now = Utc::now();
    let inserted = inserted_values(&app, Uuid::new_v4(), &row, now).unwrap();
    assert_eq!(inserted.len(), 17, "$1..$17 before the id");
    let id = DbId::Uuid(Uuid::new_v4());
    let updated = updated_values(&app, id, Uuid::new_v4(), &row, now).unwrap();
    assert_eq!(updated.len(), 17, "$1..$15, then id and owner");
    assert_eq!(updated[0], RowValue::Text(Some("+15551230001".into())));
}

#[test]
fn the_created_table_declares_every_column() {
    let ddl = create_phone_numbers(Dialect::Postgres);
    for c in PHONE_COLUMNS {
        assert!(
            ddl.contains(&format!("    {} {}", c.name, c.postgres)),
            "{ddl}"
        );
    }
    assert!(ddl.ends_with("ON phone_numbers (user_id);"), "{ddl}");
    assert_eq!(
        ASSISTANTS.create(Dialect::Sqlite),
        "CREATE TABLE assistants (\n    id TEXT PRIMARY KEY NOT NULL,\n    \
         user_id TEXT NOT NULL,\n    name TEXT,\n    vapi_assistant_id TEXT\n);\n\
         CREATE INDEX assistants_user_id ON assistants (user_id);"
    );
    assert_eq!(
        SQUADS.select(""),
        "SELECT id, user_id, name, vapi_squad_id AS vapi_id FROM squads"
    );
    assert_eq!(
        ASSISTANTS.select("WHERE {vapi_id} = $2"),
        "SELECT id, user_id, name, vapi_assistant_id AS vapi_id FROM assistants \
         WHERE vapi_assistant_id = $2"
    );
}

#[test]
fn a_squad_is_written_as_text_in_the_squads_id_form() {
    let mut app = app();
    let squad = crate::store::ids::int_as_uuid(42);
    let value = |app: &AppSchema, id| {
        value(
            &Source::Squad,
            app,
            Uuid::nil(),
            &row_with_squad(id),
            Utc::now(),
        )
    };
    assert_eq!(
        value(&app, Some(squad)).unwrap(),
        Some(RowValue::Text(Some("42".into())))
    );
    assert_eq!(DbId::uuid_of_text("42"), Some(squad));
    app.squad_id = IdKind::Uuid;
    let real = Uuid::new_v4();
    assert_eq!(
        value(&app, Some(real)).unwrap(),
        Some(RowValue::Text(Some(real.to_string())))
    );
    assert_eq!(DbId::uuid_of_text(&real.to_string()), Some(real));
    assert_eq!(value(&app, None).unwrap(), Some(RowValue::Text(None)));
    // A real UUID cannot be an integer id: refused, never written as something else.
    app.squad_id = IdKind::Integer;
    assert!(value(&app, Some(real)).is_err());
}

/// An app with UUID ids everywhere but integer `squads.id`s.
fn app() -> AppSchema {
    AppSchema {
        phone_id: IdKind::Uuid,
        phone_user: IdKind::Uuid,
        phone_assistant: IdKind::Uuid,
        assistant_user: IdKind::Uuid,
        squad_id: IdKind::Integer,
        squad_user: IdKind::Uuid,
        squads_unusable: None,
        created_at: crate::store::schema::TimeRepr::Native,
        updated_at: crate::store::schema::TimeRepr::Native,
        checks: Vec::new(),
    }
}

fn row_with_squad(squad: Option<Uuid>) -> RowWrite {
    RowWrite {
        phone_number: "+15551230001".into(),
        friendly_name: "Main".into(),
        vapi_phone_id: None,
        vapi_credential_id: None,
        twilio_account_sid: "AC1".into(),
        twilio_auth_token: "ciphertext".into(),
        token_digest: None,
        assigned_assistant_id: None,
        assigned_squad_id: squad,
        notes: None,
        protected: false,
        applied: None,
        api_key: None,
        api_secret: None,
    }
}
