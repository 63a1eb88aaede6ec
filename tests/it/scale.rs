//! Scale: a plan reads Vapi in pages and the database in a constant number of statements, however
//! many numbers the owner has; apply slows down when Vapi rate-limits it and still converges.

use std::sync::atomic::Ordering;

use serde_json::json;
use vapictl::pipeline;
use vapictl::secrets::{Identities, SecretValue, token_digest};
use vapictl::state::{DesiredState, RowWrite};
use vapictl::store::Store;
use vapictl::validate::SecretMode;
use vapictl::vapi::{VapiClient, VapiConfig};

use crate::common::*;

/// A distinct, valid US number for every `i` below 10,000.
fn number(i: usize) -> String {
    format!("+1415555{i:04}")
}

fn client(w: &World) -> VapiClient {
    VapiClient::new(VapiConfig::new(
        w.vapi.base_url(),
        SecretValue::new(w.vapi.api_key()),
    ))
    .unwrap()
}

fn desired(w: &World, spec: &SpecFile) -> DesiredState {
    let mut ids = Identities::none();
    ids.add_file(&w.identity_file).unwrap();
    pipeline::load_desired(&w.write(spec), &ids, SecretMode::Required)
        .unwrap()
        .1
}

/// Makes Vapi and the database hold exactly what `desired` asks for (every number answered by
/// the assistant `assistant`), through the library rather than the CLI so that it stays fast.
fn seed_converged(w: &World, store: &Store, desired: &DesiredState, assistant: (uuid::Uuid, &str)) {
    let digest = desired
        .numbers
        .values()
        .next()
        .and_then(|d| d.twilio.auth_token.plaintext.as_ref())
        .map(token_digest);
    for d in desired.numbers.values() {
        let id = w
            .vapi
            .seed_raw(json!({
                "provider": "twilio",
                "number": d.number.as_str(),
                "name": d.name,
                "twilioAccountSid": d.twilio.account_sid,
                "assistantId": assistant.1,
            }))
            .unwrap();
        let row = RowWrite {
            phone_number: d.number.as_str().to_string(),
            friendly_name: d.name.clone(),
            vapi_phone_id: Some(id),
            vapi_credential_id: None,
            twilio_account_sid: d.twilio.account_sid.clone(),
            twilio_auth_token: d.twilio.auth_token.armored.clone(),
            token_digest: digest.clone(),
            assigned_assistant_id: Some(assistant.0),
            notes: None,
            protected: false,
        };
        w.block_on(store.insert_row(w.owner, &row)).unwrap();
    }
}

#[test]
fn a_plan_over_2500_numbers_costs_pages_not_numbers() {
    const N: usize = 2_500;
    let w = World::sqlite();
    let (assistant_row, assistant_vapi) = w.assistant("sales-bot", OWNER);
    let spec = (0..N).fold(w.spec(), |s, i| {
        s.with(Entry::new(&number(i), &format!("Line {i}")).assistant("sales-bot"))
    });
    let desired = desired(&w, &spec);
    assert_eq!(desired.numbers.len(), N);
    let store = w.store();
    seed_converged(&w, &store, &desired, (assistant_row, &assistant_vapi));

    let vapi = client(&w);
    w.vapi.reset_log();
    let queries_before = store.queries_issued();
    let plan = w.block_on(pipeline::plan(&store, &vapi, &desired)).unwrap();

    assert!(
        plan.is_empty(),
        "seeded to match: {:?}",
        plan.changes.first()
    );
    let lists = vapi.counters().list_requests.load(Ordering::Relaxed);
    // 3 pages of phone numbers (the third also re-reads the page edges), the count, 1 page of
    // assistants.
    assert!(lists <= 6, "{lists} list requests for {N} numbers");
    assert_eq!(
        w.vapi.list_calls() as u64,
        lists,
        "the stand-in saw as many lists as the client counted"
    );
    assert_eq!(
        w.vapi.request_log().len() as u64,
        lists,
        "nothing but lists"
    );
    let queries = store.queries_issued() - queries_before;
    assert!(
        queries <= 5,
        "{queries} database statements for {N} numbers"
    );
}
