//! Property: from any mix of desired, recorded and observed states, one apply converges (a new
//! plan is empty) and the Vapi calls made are exactly the plan's Vapi steps.

use proptest::prelude::*;
use vapictl::apply::{Applier, ApplyOptions, NoProgress};
use vapictl::plan::VapiStep;
use vapictl::secrets::{Identities, SecretValue};
use vapictl::state::RowWrite;
use vapictl::validate::SecretMode;
use vapictl::vapi::{VapiClient, VapiConfig};

use crate::common::*;

/// One number's situation in the three places.
#[derive(Debug, Clone)]
struct Case {
    /// 0 not in the spec, 1 present, 2 `absent: true`.
    spec: u8,
    spec_name: u8,
    spec_sms: bool,
    /// 0 no row, 1 row pointing at the Vapi number, 2 row with a stale Vapi id, 3 row without one.
    row: u8,
    row_name: u8,
    in_vapi: bool,
    vapi_name: u8,
    vapi_sms: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0u8..3,
        0u8..2,
        any::<bool>(),
        0u8..4,
        0u8..2,
        any::<bool>(),
        0u8..2,
        any::<bool>(),
    )
        .prop_map(
            |(spec, spec_name, spec_sms, row, row_name, in_vapi, vapi_name, vapi_sms)| Case {
                spec,
                spec_name,
                spec_sms,
                row,
                row_name,
                in_vapi,
                vapi_name,
                vapi_sms,
            },
        )
}

fn run_case(cases: &[Case]) {
    let w = World::sqlite();
    let store = w.store();
    let mut spec = w.spec();
    for (i, c) in cases.iter().enumerate() {
        let number = format!("+1415555{:04}", 3000 + i);
        let vapi_id = c.in_vapi.then(|| {
            let id = w
                .vapi
                .seed_twilio_number(&number, &format!("v{}", c.vapi_name), None);
            w.vapi.patch_number(
                &id,
                serde_json::json!({"smsEnabled": c.vapi_sms, "twilioAccountSid": SID}),
            );
            id
        });
        if c.row > 0 {
            let row = RowWrite {
                phone_number: number.clone(),
                friendly_name: format!("r{}", c.row_name),
                vapi_phone_id: match c.row {
                    1 => vapi_id
                        .clone()
                        .or(Some("00000000-0000-4000-8000-00000000dead".into())),
                    2 => Some("00000000-0000-4000-8000-00000000beef".into()),
                    _ => None,
                },
                vapi_credential_id: None,
                twilio_account_sid: SID.into(),
                twilio_auth_token: w.token_armored.clone(),
                api_key: None,
                api_secret: None,
                token_digest: None,
                assigned_assistant_id: None,
                assigned_squad_id: None,
                notes: None,
                protected: false,
                applied: None,
            };
            w.block_on(store.insert_row(w.owner, &row)).unwrap();
        }
        if c.spec > 0 {
            spec = spec.with(Entry {
                sms_enabled: Some(c.spec_sms),
                absent: c.spec == 2,
                ..Entry::new(&number, &format!("s{}", c.spec_name))
            });
        }
    }
    let path = w.write(&spec);
    let mut ids = Identities::none();
    ids.add_text("test", &SecretValue::new(w.identity_text.clone()))
        .unwrap();
    let (_, desired) = vapictl::pipeline::load_desired(&path, &ids, SecretMode::Required).unwrap();
    let vapi = VapiClient::new(VapiConfig::new(
        w.vapi.base_url(),
        SecretValue::new(w.vapi.api_key()),
    ))
    .unwrap();

    w.block_on(async {
        let plan = vapictl::pipeline::plan(&store, &vapi, &desired, &ids)
            .await
            .unwrap();
        let vapi_steps = plan
            .changes
            .iter()
            .filter(|c| !matches!(c.vapi, VapiStep::None))
            .count();
        w.vapi.reset_log();
        let applier = Applier {
            vapi: &vapi,
            store: &store,
            owner: w.owner,
            options: ApplyOptions::default(),
            lock: None,
        };
        let report = applier.apply(&plan, &NoProgress).await;
        assert!(report.is_complete(), "{report:#?}");
        assert_eq!(
            w.vapi.mutating_calls(),
            vapi_steps,
            "one Vapi call per planned Vapi step"
        );
        let again = vapictl::pipeline::plan(&store, &vapi, &desired, &ids)
            .await
            .unwrap();
        assert!(again.is_empty(), "not converged: {:#?}", again.changes);
    });
    for n in w.vapi.numbers() {
        let number = n["number"].as_str().unwrap();
        assert_eq!(
            w.vapi.find_by_number(number).len(),
            1,
            "{number} duplicated"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn any_starting_state_converges_in_one_apply(cases in proptest::collection::vec(case(), 1..6)) {
        run_case(&cases);
    }
}
