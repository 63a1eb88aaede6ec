//! The whole job on embedded defaults, no account needed: a local Vapi stand-in and a Twilio
//! stand-in (the account that holds the numbers, read by the preflight), a SQLite database, a
//! fresh age key and a two-number spec; then `vapictl plan`, `vapictl apply`, and `vapictl plan`
//! again (which shows no changes).
//!
//! Run it with `cargo run --example quickstart`. Everything it makes lives in a temporary
//! directory (kept when `--keep` is given, so you can run more commands against it).

use std::path::Path;
use std::process::Command;

use standin::twilio::TwilioStandIn;
use standin::vapi::{StandIn, StandInConfig};
use vapictl::secrets::{SecretValue, encrypt, parse_recipients};
use vapictl::store::{Store, StoreOptions};

const OWNER: &str = "3f1c2b7e-0000-4000-8000-000000000001";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keep = std::env::args().any(|a| a == "--keep");
    let dir = tempfile::tempdir()?;
    let work = dir.path();
    let rt = tokio::runtime::Runtime::new()?;

    // Vapi: the stand-in, with one assistant the application already made.
    let vapi = StandIn::start_background(StandInConfig::default())?;
    let assistant_vapi_id = vapi.seed_assistant("sales-bot");

    // Twilio: the account holds both numbers; the main line still rings an old PBX, which the
    // plan warns about (the import takes it over).
    let twilio = TwilioStandIn::start()?;
    twilio.add_account(ACCOUNT_SID, AUTH_TOKEN);
    twilio.add_number(ACCOUNT_SID, "+14155551234", true, true);
    twilio.add_number(ACCOUNT_SID, "+14155551235", true, true);
    twilio.set_urls("+14155551234", Some("https://pbx.example.com/voice"), None);
    vapi.link_twilio(&twilio);

    // The application's database, with its `assistants` row for that assistant.
    let db_url = format!("sqlite://{}", work.join("app.db").display());
    rt.block_on(async {
        Store::connect(&db_url, &StoreOptions::default()).await?;
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&db_url).await?;
        sqlx::query("INSERT INTO assistants (id, user_id, name, vapi_assistant_id) VALUES (?, ?, 'sales-bot', ?)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(OWNER)
            .bind(&assistant_vapi_id)
            .execute(&mut c)
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;

    // An age key, and the Twilio tokens encrypted to it.
    use age::secrecy::ExposeSecret;
    let key = age::x25519::Identity::generate();
    let key_file = work.join("age-key.txt");
    std::fs::write(&key_file, format!("{}\n", key.to_string().expose_secret()))?;
    let recipients = parse_recipients(&[key.to_public().to_string()])?;
    let token = encrypt(&recipients, &SecretValue::new(AUTH_TOKEN))?;
    let indented: String = token.lines().map(|l| format!("      {l}\n")).collect();
    let spec = work.join("acme.yaml");
    std::fs::write(
        &spec,
        format!(
            "version: 1\nowner: {OWNER}\ndefaults:\n  twilio:\n    accountSid: {ACCOUNT_SID}\n    authToken: |\n{indented}phoneNumbers:\n  - number: \"+14155551234\"\n    name: Main Sales Line\n    assistant: sales-bot\n  - number: \"+14155551235\"\n    name: Support\n    smsEnabled: false\n"
        ),
    )?;

    let vapictl = |args: &[&str]| -> Result<i32, Box<dyn std::error::Error>> {
        println!("\n$ vapictl {}", args.join(" "));
        let status = Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["run", "--quiet", "--bin", "vapictl", "--"])
            .args(args)
            .env("VAPI_BASE_URL", vapi.base_url())
            .env("VAPI_API_KEY", vapi.api_key())
            .env("TWILIO_BASE_URL", twilio.base_url())
            .env("DATABASE_URL", &db_url)
            .env("VAPICTL_AGE_IDENTITY_FILE", &key_file)
            .status()?;
        Ok(status.code().unwrap_or(1))
    };
    let spec_arg = spec.to_str().ok_or("non-UTF-8 temp path")?;
    println!(
        "Stand-in Vapi at {}, stand-in Twilio at {}, database {db_url}, spec {}",
        vapi.base_url(),
        twilio.base_url(),
        spec.display()
    );
    let plan = vapictl(&["plan", "--detailed-exitcode", spec_arg])?;
    let apply = vapictl(&["apply", "--auto-approve", spec_arg])?;
    let again = vapictl(&["plan", "--detailed-exitcode", spec_arg])?;
    println!(
        "\nExit codes: plan {plan} (2 = changes), apply {apply} (0 = done), plan again {again} (0 = no changes)."
    );
    println!("Vapi now holds {} numbers.", vapi.numbers().len());
    let reads = twilio.requests();
    println!(
        "Twilio preflight: {} read(s) of the account ({} of them GETs: one listing per check, one to record the URLs after apply); the main line now rings {}.",
        reads.len(),
        reads.iter().filter(|r| r.method == "GET").count(),
        twilio
            .number("+14155551234")
            .and_then(|n| n.voice_url)
            .unwrap_or_default()
    );
    if keep {
        let kept = dir.keep();
        println!(
            "Kept {} (the stand-in stops with this program).",
            kept.display()
        );
    }
    let ok = plan == 2 && apply == 0 && again == 0;
    show_if_failed(ok, &spec);
    std::process::exit(if ok { 0 } else { 1 });
}

fn show_if_failed(ok: bool, spec: &Path) {
    if !ok {
        eprintln!("quickstart did not converge; spec was {}", spec.display());
    }
}
