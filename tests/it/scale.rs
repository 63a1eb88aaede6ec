//! Scale: a plan reads Vapi in pages and the database in a constant number of statements, however
//! many numbers the owner has; apply keeps to `--max-rps`, slows down when Vapi rate-limits it,
//! and still converges.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use vapictl::apply::{Applier, ApplyOptions, NoProgress};
use vapictl::pipeline;
use vapictl::secrets::{Identities, SecretValue, token_digest};
use vapictl::state::{DesiredState, RowWrite};
use vapictl::store::Store;
use vapictl::validate::SecretMode;
use vapictl::vapi::{RetryPolicy, VapiClient, VapiConfig};

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
            api_key: None,
            api_secret: None,
            token_digest: digest.clone(),
            assigned_assistant_id: Some(assistant.0),
            assigned_squad_id: None,
            notes: None,
            protected: false,
            applied: None,
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
    let plan = w
        .block_on(pipeline::plan(&store, &vapi, &desired, &Identities::none()))
        .unwrap();

    assert!(
        plan.is_empty(),
        "seeded to match: {:?}",
        plan.changes.first()
    );
    let lists = vapi.counters().list_requests.load(Ordering::Relaxed);
    // 3 pages of phone numbers (the first carries the total; each next one re-reads the edge of
    // the one before), 1 page of assistants and 1 of squads.
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

#[test]
fn a_burst_of_429s_slows_apply_down_and_it_still_converges() {
    const N: usize = 40;
    const REFUSED: usize = 12;
    let w = World::sqlite();
    let spec = (0..N).fold(w.spec(), |s, i| {
        s.with(Entry::new(&number(i), &format!("Line {i}")))
    });
    let desired = desired(&w, &spec);
    let store = w.store();
    let mut cfg = VapiConfig::new(w.vapi.base_url(), SecretValue::new(w.vapi.api_key()));
    cfg.max_rps = 200;
    // Enough attempts that no create gives up while the burst lasts (`Retry-After: 0`).
    cfg.retry = RetryPolicy {
        max_attempts: REFUSED as u32 + 1,
        ..RetryPolicy::default()
    };
    let vapi = VapiClient::new(cfg).unwrap();
    let plan = w
        .block_on(pipeline::plan(&store, &vapi, &desired, &Identities::none()))
        .unwrap();
    assert_eq!(plan.changes.len(), N);
    w.vapi.fail_next("POST", "/phone-number", 429, REFUSED);

    let applier = Applier {
        vapi: &vapi,
        store: &store,
        owner: w.owner,
        options: ApplyOptions {
            parallelism: 4,
            ..ApplyOptions::default()
        },
        lock: None,
    };
    let started = Instant::now();
    let report = w.block_on(applier.apply(&plan, &NoProgress));
    let took = started.elapsed();

    assert!(report.is_complete(), "{:?}", report.outcomes);
    let rate = vapi.rate_limit();
    assert_eq!(rate.throttled, REFUSED as u64);
    assert!(
        rate.lowest_rps <= 100.0,
        "slowed down to half the maximum or less: {rate:?}"
    );
    assert!(
        rate.current_rps > rate.lowest_rps,
        "recovering once calls succeed: {rate:?}"
    );
    // Without the 429s the 40 creates start at once (the burst is 200); after the first halving
    // at least 36 of them wait for slots at 100 calls/s or less, climbing 20 calls/s per second.
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    assert_eq!(
        w.vapi.calls("POST"),
        N + REFUSED,
        "every refused create was sent again"
    );
    for i in 0..N {
        assert_eq!(
            w.vapi.find_by_number(&number(i)).len(),
            1,
            "never created twice"
        );
    }
    let again = w
        .block_on(pipeline::plan(&store, &vapi, &desired, &Identities::none()))
        .unwrap();
    assert!(again.is_empty(), "converged: {:?}", again.changes.first());
}

#[test]
fn max_rps_paces_the_creates_of_an_apply() {
    let w = World::sqlite();
    let spec = w.write(&(0..5).fold(w.spec(), |s, i| s.with(Entry::new(&number(i), "Line"))));
    let started = Instant::now();
    let o = w
        .vapictl()
        .args(["apply", "--auto-approve", "--max-rps", "2"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_code(&o, 0);
    // A burst of two, then one every half second.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    assert_eq!(w.vapi.calls("POST"), 5);
    assert_code(&w.plan(&spec), 0);
}

#[test]
fn a_max_rps_of_zero_is_refused_from_the_flag_and_the_environment() {
    let w = World::sqlite();
    let spec = w.write(&w.spec().with(Entry::new(&number(0), "Line")));
    let flag = w.run(&[
        "apply",
        "--auto-approve",
        "--max-rps",
        "0",
        spec.to_str().unwrap(),
    ]);
    let env = w
        .vapictl()
        .env("VAPICTL_MAX_RPS", "0")
        .args(["plan", spec.to_str().unwrap()])
        .output()
        .unwrap();
    for o in [flag, env] {
        assert_code(&o, 1);
        assert!(text(&o).1.contains("--max-rps"), "{}", text(&o).1);
    }
    assert_eq!(w.vapi.request_log().len(), 0, "nothing reached Vapi");
}
