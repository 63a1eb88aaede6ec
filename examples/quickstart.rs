//! The whole job on embedded defaults, no account needed: a local Vapi stand-in, a SQLite
//! database, a fresh age key and a two-number spec; then `vapictl plan`, `vapictl apply`, and
//! `vapictl plan` again (which shows no changes).
//!
//! Run it with `cargo run --example quickstart`. Everything it makes lives in a temporary
//! directory (kept when `--keep` is given, so you can run more commands against it).

use std::path::Path;
use std::process::Command;

use standin::vapi::{StandIn, StandInConfig};
use vapictl::secrets::{SecretValue, encrypt, parse_recipients};
use vapictl::store::{Store, StoreOptions};

const OWNER: &str = "3f1c2b7e-0000-4000-8000-000000000001";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keep = std::env::args().any(|a| a == "--keep");
    let dir = tempfile::tempdir()?;
    let work = dir.path();
    let rt = tokio::runtime::Runtime::new()?;

    // Vapi: the stand-in, with one assistant the application already made.
    let vapi = StandIn::start_background(StandInConfig::default())?;
    let assistant_vapi_id = vapi.seed_assistant("sales-bot");

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
    let token = encrypt(
        &recipients,
        &SecretValue::new("0123456789abcdef0123456789abcdef"),
    )?;
    let indented: String = token.lines().map(|l| format!("      {l}\n")).collect();
    let spec = work.join("acme.yaml");
    std::fs::write(
        &spec,
        format!(
            "version: 1\nowner: {OWNER}\ndefaults:\n  twilio:\n    accountSid: AC0123456789abcdef0123456789abcdef\n    authToken: |\n{indented}phoneNumbers:\n  - number: \"+14155551234\"\n    name: Main Sales Line\n    assistant: sales-bot\n  - number: \"+14155551235\"\n    name: Support\n    smsEnabled: false\n"
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
            .env("DATABASE_URL", &db_url)
            .env("VAPICTL_AGE_IDENTITY_FILE", &key_file)
            .status()?;
        Ok(status.code().unwrap_or(1))
    };
    let spec_arg = spec.to_str().ok_or("non-UTF-8 temp path")?;
    println!(
        "Stand-in Vapi at {}, database {db_url}, spec {}",
        vapi.base_url(),
        spec.display()
    );
    let plan = vapictl(&["plan", "--detailed-exitcode", spec_arg])?;
    let apply = vapictl(&["apply", "--auto-approve", spec_arg])?;
    let again = vapictl(&["plan", "--detailed-exitcode", spec_arg])?;
    println!(
        "\nExit codes: plan {plan} (2 = changes), apply {apply} (0 = done), plan again {again} (0 = no changes)."
    );
    println!("Vapi now holds {} numbers.", vapi.numbers().len());
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
