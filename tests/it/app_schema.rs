//! End to end: an application schema vapictl did not write, refused before any Vapi call when it
//! cannot take vapictl's rows, and a write it rejects explained everywhere (issue 9, defect 14).

use crate::both_backends;
use crate::common::*;

const N1: &str = "+14155551234";

/// Replaces the world's `phone_numbers` with the app's own, plus `extra` (columns or constraints,
/// each starting with a comma).
fn app_phone_numbers(w: &World, extra: &str) {
    let (id, time) = match w.backend {
        Backend::Sqlite => ("TEXT PRIMARY KEY", "TEXT DEFAULT CURRENT_TIMESTAMP"),
        Backend::Postgres => ("uuid PRIMARY KEY", "timestamptz DEFAULT now()"),
    };
    w.exec_sql(&format!(
        "DROP TABLE phone_numbers;
         CREATE TABLE phone_numbers (
             id {id}, user_id {user}, phone_number varchar(32) UNIQUE, friendly_name text,
             provider text, vapi_phone_id text, vapi_credential_id text,
             twilio_account_sid text, twilio_auth_token text, assigned_assistant_id {user},
             created_at {time}, updated_at {time} {extra});",
        user = if w.backend == Backend::Sqlite {
            "TEXT"
        } else {
            "uuid"
        },
    ));
}

both_backends!(
    a_column_vapictl_cannot_fill_is_refused_before_any_vapi_call,
    |w: World| {
        app_phone_numbers(&w, ", tenant_id text NOT NULL");
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));

        for o in [w.plan(&spec), w.apply(&spec)] {
            assert_code(&o, 1);
            let (_, err) = text(&o);
            assert!(err.contains("`phone_numbers.tenant_id`"), "{err}");
            assert!(err.contains("NOT NULL"), "{err}");
            assert!(err.contains("hint:"), "{err}");
        }
        assert!(w.vapi.request_log().is_empty(), "no Vapi call at all");
        assert!(w.vapi.find_by_number(N1).is_empty());
    }
);

both_backends!(
    a_row_the_app_rejects_is_refused_before_vapi_and_says_why_everywhere,
    |w: World| {
        // A CHECK on the token's length: the row write is tried (and rolled back) before the
        // number is created in Vapi, so nothing is left half-done and the reason is kept.
        app_phone_numbers(
            &w,
            ", CONSTRAINT token_fits CHECK (length(twilio_auth_token) < 40)",
        );
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));

        for _ in 0..2 {
            let o = w.apply(&spec);
            assert_code(&o, 1);
            let (out, err) = text(&o);
            let all = format!("{out}{err}");
            assert!(all.contains("token_fits"), "{all}");
            assert!(all.contains("length(twilio_auth_token)"), "{all}");
            assert!(!all.contains(" at line "), "{all}");
            assert!(!all.contains("Failing row"), "{all}");
            assert!(!all.contains(TOKEN), "{all}");
        }
        assert_eq!(w.vapi.mutating_calls(), 0, "Vapi was never changed");
        assert!(w.vapi.find_by_number(N1).is_empty());

        let db = w.dump_db();
        assert!(
            db.lines()
                .any(|l| l.contains("failed") && l.contains("token_fits")),
            "the audit record keeps the database's reason:\n{db}"
        );
        assert!(
            !db.contains(N1),
            "no row was kept, and the audit trail masks numbers"
        );
    }
);

/// PostgreSQL: the app's tables live in schema `app`, outside the default search path.
#[test]
fn postgres_tables_in_another_schema_are_found_through_the_url_never_shadowed() {
    let Some(w) = World::postgres() else {
        return;
    };
    w.exec_sql(&format!(
        "DROP TABLE phone_numbers, assistants;
         CREATE SCHEMA app;
         CREATE TABLE app.assistants (id uuid PRIMARY KEY, user_id uuid, name text,
             vapi_assistant_id text);
         CREATE TABLE app.phone_numbers (id uuid PRIMARY KEY, user_id uuid,
             phone_number text UNIQUE, friendly_name text, provider text, vapi_phone_id text,
             vapi_credential_id text, twilio_account_sid text, twilio_auth_token text,
             assigned_assistant_id uuid, created_at timestamptz DEFAULT now(),
             updated_at timestamptz DEFAULT now());
         INSERT INTO app.phone_numbers (id, user_id, phone_number, provider)
             VALUES ('00000000-0000-4000-8000-0000000000aa', '{OTHER_USER}', '{N1}', 'twilio');"
    ));
    let spec = w.write(&w.spec().with(Entry::new(N1, "Mine now")));

    let o = w.plan(&spec);
    assert_code(&o, 1);
    let (_, err) = text(&o);
    assert!(err.contains("`app.phone_numbers`"), "{err}");
    assert!(err.contains("search_path%3Dapp"), "{err}");
    assert!(w.vapi.request_log().is_empty(), "no Vapi call at all");

    // With the schema on the path, the other user's number is theirs.
    let o = w
        .vapictl()
        .env(
            "DATABASE_URL",
            format!("{}?options=-c%20search_path%3Dapp", w.db_url),
        )
        .args(["plan", "--detailed-exitcode", spec.to_str().unwrap()])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(
        format!("{out}{err}").contains("another user"),
        "{out}\n{err}"
    );
    assert_eq!(w.vapi.mutating_calls(), 0);
}

both_backends!(
    integer_ids_and_epoch_times_apply_and_converge,
    |w: World| {
        let (id, int) = match w.backend {
            Backend::Sqlite => ("INTEGER PRIMARY KEY", "INTEGER"),
            Backend::Postgres => ("bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "bigint"),
        };
        let user = if w.backend == Backend::Sqlite {
            "TEXT"
        } else {
            "uuid"
        };
        let bot = w.vapi.seed_assistant("sales-bot");
        let squad = w.vapi.seed_squad("night-shift");
        w.exec_sql(&format!(
            "DROP TABLE phone_numbers; DROP TABLE assistants; DROP TABLE IF EXISTS squads;
             CREATE TABLE assistants (id {id}, user_id {user}, name text,
                 vapi_assistant_id text);
             CREATE TABLE squads (id {id}, user_id {user}, name text NOT NULL,
                 vapi_squad_id text);
             INSERT INTO squads (user_id, name, vapi_squad_id)
                 VALUES ('{OTHER_USER}', 'their-squad', 'sq-x'), ('{OTHER_USER}', 'x', 'sq-y'),
                 ('{OWNER}', 'night-shift', '{squad}');
             CREATE TABLE phone_numbers (id {id}, user_id {user}, phone_number text UNIQUE,
                 friendly_name text, provider text, vapi_phone_id text, vapi_credential_id text,
                 twilio_account_sid text, twilio_auth_token text,
                 assigned_assistant_id {int} REFERENCES assistants (id),
                 created_at {int} NOT NULL, updated_at {int} NOT NULL);
             INSERT INTO assistants (user_id, name, vapi_assistant_id)
                 VALUES ('{OWNER}', 'other-bot', 'asst-x'), ('{OWNER}', 'sales-bot', '{bot}');"
        ));
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main").assistant("sales-bot"))
                // By its integer id, as the app spells it.
                .with(Entry::new("+14155551235", "Second").squad("3")),
        );

        assert_code(&w.apply(&spec), 0);
        // The squad is the app's row 3, written as its integer in vapictl's text column.
        let squad_of = w.strings(
            "SELECT CAST(vapictl_squad_id AS TEXT) FROM phone_numbers \
             WHERE phone_number = '+14155551235'",
        );
        assert_eq!(squad_of, vec![vec![Some("3".to_string())]]);
        assert_eq!(
            w.vapi.find_by_number("+14155551235")[0]["squadId"],
            squad.as_str()
        );
        // Another user's squad, by its integer id: refused by name, in a single and a fleet run.
        let theirs = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main").assistant("sales-bot"))
                .with(Entry::new("+14155551235", "Second").squad("1")),
        );
        let o = w.plan(&theirs);
        assert_code(&o, 1);
        assert!(
            text(&o).1.contains("squad `1` belongs to another user"),
            "{}",
            text(&o).1
        );
        let dir1 = w.path("theirs");
        std::fs::create_dir_all(&dir1).unwrap();
        std::fs::copy(&theirs, dir1.join("owner.yaml")).unwrap();
        let o = w.run(&["plan", dir1.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert!(
            format!("{out}{err}").contains("squad `1` belongs to another user"),
            "{out}\n{err}"
        );
        let spec = w.write(
            &w.spec()
                .with(Entry::new(N1, "Main").assistant("sales-bot"))
                .with(Entry::new("+14155551235", "Second").squad("3")),
        );
        let o = w.plan(&spec);
        assert_code(&o, 0);
        assert!(text(&o).0.contains("No changes"), "{}", text(&o).0);

        let stored = w.strings(&format!(
            "SELECT CAST(id AS TEXT), CAST(assigned_assistant_id AS TEXT), \
                 CAST(created_at AS TEXT) FROM phone_numbers WHERE phone_number = '{N1}'"
        ));
        let [id, assistant, created] = &stored[0][..] else {
            panic!("{stored:?}")
        };
        // Whatever the database chose (probes may have used up sequence values), it is an
        // integer, and the assistant is the app's row 2.
        assert!(id.as_deref().unwrap().parse::<i64>().is_ok(), "{id:?}");
        assert_eq!(assistant.as_deref(), Some("2"));
        let created: i64 = created.as_deref().unwrap().parse().expect("epoch seconds");
        assert!(
            (chrono::Utc::now().timestamp() - created).abs() < 60,
            "{created}"
        );
        let vapi = w.vapi.find_by_number(N1);
        assert_eq!(vapi[0]["assistantId"], bot.as_str());

        // A fleet run reads the same rows through its one snapshot, integer ids and all: the
        // owner has no changes beside a second owner's plan.
        let dir = w.path("fleet");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&spec, dir.join("owner.yaml")).unwrap();
        std::fs::write(
            dir.join("other.yaml"),
            SpecFile::new(OTHER_USER, SID, &w.token_armored)
                .with(Entry::new("+14155551236", "Theirs"))
                .to_yaml(),
        )
        .unwrap();
        let o = w
            .vapictl()
            .args(["plan", "--format", "json", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert_code(&o, 0);
        let run: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let plans = run["plans"].as_array().expect("plans");
        let mine = plans
            .iter()
            .find(|p| p["owner"] == OWNER)
            .unwrap_or_else(|| panic!("{run:#}"));
        assert_eq!(
            mine["changes"].as_array().map(Vec::len),
            Some(0),
            "{mine:#}"
        );
    }
);

both_backends!(
    an_app_squads_table_of_another_shape_refuses_only_entries_that_name_a_squad,
    |w: World| {
        // The app's own `squads` means something else: no `name`, no `vapi_squad_id`.
        w.exec_sql(
            "DROP TABLE squads;
             CREATE TABLE squads (id integer PRIMARY KEY, user_id text, title text);",
        );
        let spec = w.write(&w.spec().with(Entry::new(N1, "Main")));
        assert_code(&w.apply(&spec), 0);
        let o = w.plan(&spec);
        assert_code(&o, 0);

        let spec = w.write(&w.spec().with(Entry::new(N1, "Main").squad("night-shift")));
        let before = w.vapi.mutating_calls();
        let o = w.plan(&spec);
        assert_code(&o, 1);
        let err = text(&o).1;
        assert!(
            err.contains("`phoneNumbers[0].squad`")
                && err.contains("the application's `squads` table cannot be read")
                && err.contains("vapi_squad_id"),
            "{err}"
        );
        // A fleet run says the same for that owner.
        let dir = w.path("fleet");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&spec, dir.join("owner.yaml")).unwrap();
        let o = w.run(&["apply", "--auto-approve", dir.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert!(
            format!("{out}{err}").contains("the application's `squads` table cannot be read"),
            "{out}\n{err}"
        );
        assert_eq!(w.vapi.mutating_calls(), before, "nothing was written");
    }
);
