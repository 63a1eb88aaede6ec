//! One function per command: settings in, exit status out. Data goes to stdout, talk to stderr.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use vapictl::apply::{Applier, ApplyOptions, Outcome, Progress};
use vapictl::plan::Change;
use vapictl::render::{
    GITHUB_COMMENT_LIMIT, Style, render_apply_report, render_drift_text, render_plan_json,
    render_plan_markdown, render_plan_text,
};
use vapictl::safety::DeleteThreshold;
use vapictl::saved::SavedPlan;
use vapictl::secrets::{self, SecretValue};
use vapictl::state::DesiredState;
use vapictl::store::{LockHolder, OwnerLock, Store, StoreOptions};
use vapictl::validate::SecretMode;
use vapictl::vapi::VapiClient;
use vapictl::{pipeline, spec};

use crate::Exit;
use crate::cli::{Cli, Command, Format, GlobalArgs};
use crate::settings;

pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let g = &cli.global;
    match &cli.command {
        Command::Validate { spec } => validate(g, spec),
        Command::Plan {
            spec,
            detailed_exitcode,
            format,
            out,
        } => plan(g, spec, *detailed_exitcode, *format, out.as_deref()).await,
        Command::Apply {
            spec,
            auto_approve,
            parallelism,
            allow_deletes,
            lock_timeout,
        } => {
            let opts = ApplyArgs {
                auto_approve: *auto_approve,
                parallelism: usize::from(*parallelism),
                allow_deletes: *allow_deletes,
                lock_timeout: Duration::from_secs(*lock_timeout),
            };
            apply(g, spec, &opts).await
        }
        Command::History {
            number,
            owner,
            spec,
            limit,
        } => {
            history(
                g,
                number.as_deref(),
                owner.as_deref(),
                spec.as_deref(),
                *limit,
            )
            .await
        }
        Command::Drift { spec, format } => drift(g, spec, *format).await,
        Command::Encrypt { recipients } => encrypt(recipients),
        Command::Import {
            owner,
            recipients,
            adopt,
        } => import(g, owner, recipients, *adopt).await,
        Command::Schema => {
            io::stdout().write_all(spec::json_schema().as_bytes())?;
            Ok(Exit::Ok)
        }
    }
}

fn validate(g: &GlobalArgs, path: &Path) -> anyhow::Result<Exit> {
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(path, &identities, SecretMode::Optional)?;
    let n = desired.numbers.len();
    println!(
        "{}: valid ({n} number{})",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    if identities.is_empty() {
        eprintln!(
            "note: no age identity given, so tokens were not decrypted and their length was not checked"
        );
    }
    Ok(Exit::Ok)
}

/// The database and Vapi, opened only after the spec is known to be valid.
async fn connect(g: &GlobalArgs) -> anyhow::Result<(Store, VapiClient)> {
    let vapi = VapiClient::new(settings::vapi_config(g)?)?;
    let store = Store::connect(&g.database_url, &StoreOptions::default()).await?;
    Ok((store, vapi))
}

async fn plan(
    g: &GlobalArgs,
    path: &Path,
    detailed: bool,
    format: Format,
    save_to: Option<&Path>,
) -> anyhow::Result<Exit> {
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(path, &identities, SecretMode::Optional)?;
    let (store, vapi) = connect(g).await?;
    let plan = pipeline::plan(&store, &vapi, &desired).await?;
    let style = Style {
        color: settings::stdout_color(g),
    };
    let mut out = io::stdout().lock();
    match format {
        Format::Text => render_plan_text(&plan, &style, &mut out)?,
        Format::Markdown => render_plan_markdown(&plan, GITHUB_COMMENT_LIMIT, &mut out)?,
        Format::Json => render_plan_json(&plan, &mut out)?,
    }
    out.flush()?;
    if let Some(file) = save_to {
        let saved = SavedPlan::new(&plan, &path.to_string_lossy(), uuid::Uuid::new_v4());
        let mut json = serde_json::to_vec_pretty(&saved)?;
        json.push(b'\n');
        std::fs::write(file, json)
            .with_context(|| format!("writing the plan to `{}`", file.display()))?;
        eprintln!(
            "Saved the plan to {}; apply exactly it with `vapictl apply {}`.",
            file.display(),
            file.display()
        );
    }
    if let Err(refusal) = DeleteThreshold::default().check(&plan, None) {
        let text = refusal.to_string();
        eprintln!("note: apply will refuse this plan: {text}");
    }
    Ok(if detailed && !plan.is_empty() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

async fn drift(g: &GlobalArgs, path: &Path, format: Format) -> anyhow::Result<Exit> {
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(path, &identities, SecretMode::Optional)?;
    let (store, vapi) = connect(g).await?;
    let plan = pipeline::plan(&store, &vapi, &desired).await?;
    let mut out = io::stdout().lock();
    match format {
        Format::Text => {
            let style = Style {
                color: settings::stdout_color(g),
            };
            render_drift_text(&plan, &style, &mut out)?
        }
        Format::Markdown => render_plan_markdown(&plan, GITHUB_COMMENT_LIMIT, &mut out)?,
        Format::Json => render_plan_json(&plan, &mut out)?,
    }
    out.flush()?;
    Ok(if plan.is_empty() {
        Exit::Ok
    } else {
        Exit::Changes
    })
}

struct ApplyArgs {
    auto_approve: bool,
    parallelism: usize,
    allow_deletes: Option<usize>,
    lock_timeout: Duration,
}

async fn apply(g: &GlobalArgs, path: &Path, args: &ApplyArgs) -> anyhow::Result<Exit> {
    // A saved plan names its spec; anything else is a spec.
    let bytes = std::fs::read(path).unwrap_or_default();
    let saved = SavedPlan::parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "`{}`: {e}\nhint: make a new plan with `vapictl plan --out FILE`",
            path.display()
        )
    })?;
    let spec_path = match &saved {
        Some(s) => std::path::PathBuf::from(&s.spec_path),
        None => path.to_path_buf(),
    };
    // A saved plan was reviewed: it is applied without asking.
    let auto_approve = args.auto_approve || saved.is_some();
    let identities = settings::identities(g)?;
    let (loaded, desired) = pipeline::load_desired(&spec_path, &identities, SecretMode::Required)?;
    if let Some(s) = &saved
        && loaded.digest != s.spec_digest
    {
        eprintln!(
            "error: the saved plan is stale: the spec `{}` changed since the plan was made\nhint: run `vapictl plan --out FILE` again and review the new plan",
            s.spec_path
        );
        return Ok(Exit::Refused);
    }
    if !auto_approve && !io::stdin().is_terminal() {
        anyhow::bail!(
            "apply needs confirmation, but stdin is not a terminal\nhint: review with `vapictl plan`, then run `vapictl apply --auto-approve` in pipelines"
        );
    }
    // From here on, Ctrl-C or SIGTERM stops cleanly: in-flight changes finish, no new one starts.
    let stop = Arc::new(AtomicBool::new(false));
    spawn_stop_on_signal(stop.clone());
    let (store, vapi) = connect(g).await?;
    let run_id = uuid::Uuid::new_v4().to_string();
    // One apply per owner at a time: the plan is made and carried out under the lock.
    let lock = store
        .acquire_lock(
            desired.owner,
            &LockHolder::this_process(run_id.clone()),
            args.lock_timeout,
        )
        .await?;
    let run = LockedRun {
        store: &store,
        vapi: &vapi,
        lock: &lock,
        run_id,
        stop,
        saved,
        auto_approve,
    };
    let result = apply_locked(g, &desired, args, run).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the owner lock; it expires by itself");
    }
    result
}

/// What an apply holds while it runs under the owner's lock.
struct LockedRun<'a> {
    store: &'a Store,
    vapi: &'a VapiClient,
    lock: &'a OwnerLock,
    run_id: String,
    stop: Arc<AtomicBool>,
    saved: Option<SavedPlan>,
    auto_approve: bool,
}

async fn apply_locked(
    g: &GlobalArgs,
    desired: &DesiredState,
    args: &ApplyArgs,
    run: LockedRun<'_>,
) -> anyhow::Result<Exit> {
    let LockedRun {
        store,
        vapi,
        lock,
        run_id,
        stop,
        saved,
        auto_approve,
    } = run;
    let plan = pipeline::plan(store, vapi, desired).await?;
    if let Some(saved) = &saved {
        let replayed = "error: this saved plan was applied before; a plan can be applied once\nhint: run `vapictl plan --out FILE` for a new plan";
        if store.plan_claimed(&saved.plan_id).await? {
            eprintln!("{replayed}");
            return Ok(Exit::Refused);
        }
        let reasons = saved.staleness(&plan);
        if !reasons.is_empty() {
            eprintln!(
                "error: the saved plan is stale; nothing was applied:\n  {}\nhint: run `vapictl plan --out FILE` again and review the new plan",
                reasons.join("\n  ")
            );
            return Ok(Exit::Refused);
        }
        if !store
            .claim_plan(&saved.plan_id, desired.owner, &run_id)
            .await?
        {
            eprintln!("{replayed}");
            return Ok(Exit::Refused);
        }
    }
    let style = Style {
        color: settings::stdout_color(g),
    };
    {
        let mut out = io::stdout().lock();
        render_plan_text(&plan, &style, &mut out)?;
        out.flush()?;
    }
    if plan.is_empty() {
        return Ok(Exit::Ok);
    }
    if let Err(refusal) = DeleteThreshold::default().check(&plan, args.allow_deletes) {
        eprintln!("error: {refusal}");
        return Ok(Exit::Refused);
    }
    if !auto_approve && !confirm()? {
        eprintln!("Apply cancelled; nothing was changed.");
        return Ok(Exit::Error);
    }

    let options = ApplyOptions {
        parallelism: args.parallelism,
        stop: stop.clone(),
        run_id,
        ci_run_id: std::env::var("GITHUB_RUN_ID")
            .or_else(|_| std::env::var("CI_PIPELINE_ID"))
            .ok(),
        commit_sha: std::env::var("GITHUB_SHA")
            .or_else(|_| std::env::var("CI_COMMIT_SHA"))
            .ok(),
    };
    let applier = Applier {
        vapi,
        store,
        owner: desired.owner,
        options,
        lock: Some(lock),
    };
    let progress = StderrProgress::new(plan.changes.len(), g.quiet);
    let report = applier.apply(&plan, &progress).await;
    {
        let mut out = io::stdout().lock();
        render_apply_report(&report, &style, &mut out)?;
        out.flush()?;
    }
    if !report.is_complete() {
        return Ok(Exit::Error);
    }
    // Prove convergence: a fresh plan must be empty.
    let again = pipeline::plan(store, vapi, desired)
        .await
        .context("re-reading after apply")?;
    if !again.is_empty() {
        eprintln!(
            "error: apply finished but {} change(s) remain; run `vapictl plan` to see them",
            again.changes.len()
        );
        return Ok(Exit::Error);
    }
    Ok(Exit::Ok)
}

async fn history(
    g: &GlobalArgs,
    number: Option<&str>,
    owner: Option<&str>,
    spec: Option<&Path>,
    limit: u32,
) -> anyhow::Result<Exit> {
    let owner = match (owner, spec) {
        (Some(o), _) => uuid::Uuid::parse_str(o).map_err(|_| {
            anyhow::anyhow!("`{o}` is not a UUID\nhint: `--owner` takes the owner's users.id")
        })?,
        (None, Some(path)) => spec::load_file(path)?.spec.owner.parse().map_err(|_| {
            anyhow::anyhow!("the spec's owner is not a UUID; run `vapictl validate`")
        })?,
        (None, None) => anyhow::bail!("give `--owner UUID` or `--spec FILE`"),
    };
    let store = Store::connect(&g.database_url, &StoreOptions::default()).await?;
    let records = store.history(owner, number, limit).await?;
    let mut out = io::stdout().lock();
    if records.is_empty() {
        writeln!(out, "No recorded changes for owner {owner}.")?;
    }
    for r in &records {
        writeln!(
            out,
            "{}  {:<10} {:<8} {:<10} {}{}",
            r.at.format("%Y-%m-%d %H:%M:%S"),
            r.action,
            r.number_masked,
            r.outcome,
            r.fields.join(","),
            r.error
                .as_deref()
                .map(|e| format!("  ({})", e.lines().next().unwrap_or_default()))
                .unwrap_or_default()
        )?;
        let mut meta = format!("    run {}", r.run_id);
        if let Some(ci) = &r.ci_run_id {
            meta.push_str(&format!(" ci {ci}"));
        }
        if let Some(sha) = &r.commit_sha {
            meta.push_str(&format!(" commit {sha}"));
        }
        if let Some(id) = &r.vapi_phone_id {
            meta.push_str(&format!(" vapi {id}"));
        }
        writeln!(out, "{meta}")?;
    }
    Ok(Exit::Ok)
}

async fn import(
    g: &GlobalArgs,
    owner: &str,
    recipients: &[String],
    adopt: bool,
) -> anyhow::Result<Exit> {
    let owner = uuid::Uuid::parse_str(owner).map_err(|_| {
        anyhow::anyhow!("`{owner}` is not a UUID\nhint: `--owner` takes the owner's users.id")
    })?;
    let identities = settings::identities(g)?;
    let parsed = if recipients.is_empty() {
        None
    } else {
        if identities.is_empty() {
            anyhow::bail!(
                "re-encrypting needs an age identity that can decrypt the stored tokens\nhint: pass `--identity FILE` or set `VAPICTL_AGE_IDENTITY`, or leave out `--recipient` to keep the stored ciphertexts"
            );
        }
        Some(secrets::parse_recipients(recipients)?)
    };
    let (store, vapi) = connect(g).await?;
    let observed = vapi.observe().await?;
    let twilio_numbers: Vec<String> = observed
        .numbers
        .iter()
        .filter_map(|o| o.number.clone())
        .collect();
    let recorded = store.load_recorded(owner, &twilio_numbers, &[]).await?;
    let tokens = match &parsed {
        Some(r) => vapictl::import::Tokens::ReEncrypt {
            identities: &identities,
            recipients: r,
        },
        None => vapictl::import::Tokens::Keep,
    };
    let imported = vapictl::import::import(owner, &recorded, &observed, &tokens, adopt)
        .map_err(|(number, e)| anyhow::anyhow!("`{number}`: {e}"))?;
    io::stdout().write_all(imported.yaml.as_bytes())?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    if !imported.unmanaged.is_empty() {
        eprintln!(
            "{} Twilio number(s) in Vapi are managed by no one{}: {}",
            imported.unmanaged.len(),
            if adopt {
                " (included)"
            } else {
                " (add `--adopt` to include them)"
            },
            imported.unmanaged.join(", ")
        );
    }
    if !imported.placeholders.is_empty() {
        eprintln!(
            "note: {} token(s) are placeholders to replace before applying: {}",
            imported.placeholders.len(),
            imported.placeholders.join(", ")
        );
    }
    eprintln!("Imported {} number(s) for owner {owner}.", imported.numbers);
    Ok(Exit::Ok)
}

fn confirm() -> anyhow::Result<bool> {
    eprint!("Apply these changes? Only `yes` is accepted: ");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// Ctrl-C or SIGTERM: finish what is in flight, start nothing new.
fn spawn_stop_on_signal(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        stop.store(true, Ordering::SeqCst);
        eprintln!("stopping: finishing the changes in flight, starting no new ones");
    });
}

/// Apply progress on stderr: a bar on a terminal, one plain line per number elsewhere (CI).
struct StderrProgress {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl StderrProgress {
    fn new(total: usize, quiet: bool) -> Self {
        let bar = (!quiet && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        StderrProgress { quiet, bar }
    }
}

impl Drop for StderrProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for StderrProgress {
    fn started(&self, change: &Change) {
        let masked = vapictl::state::mask_number(&change.number);
        tracing::info!(number = %masked, action = change.action.label(), "applying");
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} {masked}", change.action.label()));
        }
    }
    fn finished(&self, outcome: &Outcome, done: usize, total: usize) {
        if self.quiet {
            return;
        }
        let status = if outcome.result.is_ok() {
            "ok"
        } else {
            "failed"
        };
        let line = format!(
            "[{done}/{total}] {} {} {status}",
            outcome.action.label(),
            vapictl::state::mask_number(&outcome.number)
        );
        match &self.bar {
            Some(bar) => {
                if outcome.result.is_err() {
                    bar.println(line);
                }
                bar.set_position(done as u64);
            }
            None => eprintln!("{line}"),
        }
    }
}

fn encrypt(recipients: &[String]) -> anyhow::Result<Exit> {
    let recipients = secrets::parse_recipients(recipients)?;
    let mut input = String::new();
    io::stdin()
        .read_to_string(&mut input)
        .context("reading the secret from stdin")?;
    // A trailing newline from `echo` or a here-string is not part of the token.
    let secret = SecretValue::new(input.trim_end_matches(['\n', '\r']));
    zeroize::Zeroize::zeroize(&mut input);
    if secret.expose().is_empty() {
        anyhow::bail!(
            "nothing to encrypt: stdin was empty\nhint: printf '%s' \"$TOKEN\" | vapictl encrypt --recipient age1…"
        );
    }
    let armored = secrets::encrypt(&recipients, &secret)?;
    // Exactly what `age -a` prints, so `age -d` reads it too; paste it under `authToken: |`.
    io::stdout().write_all(armored.as_bytes())?;
    Ok(Exit::Ok)
}
