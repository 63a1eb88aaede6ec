//! `vapictl apply`: make Vapi and the database match a spec, or apply a saved plan.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use vapictl::apply::{Applier, ApplyOptions, Outcome, Progress};
use vapictl::pipeline;
use vapictl::plan::Change;
use vapictl::render::{Style, render_apply_report, render_plan_text};
use vapictl::safety::DeleteThreshold;
use vapictl::saved::SavedPlan;
use vapictl::state::DesiredState;
use vapictl::store::{LockHolder, LockWait, OwnerLock, Store};
use vapictl::validate::SecretMode;
use vapictl::vapi::VapiClient;

use super::connect;
use crate::Exit;
use crate::cli::GlobalArgs;
use crate::settings;

pub(crate) struct ApplyArgs {
    pub(crate) auto_approve: bool,
    pub(crate) parallelism: usize,
    pub(crate) allow_deletes: Option<usize>,
    pub(crate) lock_timeout: Duration,
}

pub(crate) async fn run(g: &GlobalArgs, path: &Path, args: &ApplyArgs) -> anyhow::Result<Exit> {
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
    // From here on, Ctrl-C or SIGTERM stops cleanly: in-flight changes finish, no new one starts;
    // a wait for the lock ends at once (nothing changed yet).
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = spawn_stop_on_signal(stop.clone());
    let (store, vapi) = connect(g).await?;
    let run_id = uuid::Uuid::new_v4().to_string();
    // One apply per owner at a time: the plan is made and carried out under the lock.
    let quiet = g.quiet;
    let wait = LockWait::new(args.lock_timeout)
        .reporting(move |event| {
            if !quiet {
                eprintln!("{event}");
            }
        })
        .interrupted_by(stopped);
    let lock = store
        .acquire_lock_with(
            desired.owner,
            &LockHolder::this_process(run_id.clone()),
            wait,
        )
        .await?;
    let run = LockedRun {
        identities: &identities,
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

const REPLAYED: &str = "error: this saved plan was applied before; a plan can be applied once\nhint: run `vapictl plan --out FILE` for a new plan";

/// What an apply holds while it runs under the owner's lock.
struct LockedRun<'a> {
    identities: &'a vapictl::secrets::Identities,
    store: &'a Store,
    vapi: &'a VapiClient,
    lock: &'a OwnerLock,
    run_id: String,
    stop: Arc<AtomicBool>,
    saved: Option<SavedPlan>,
    pub(crate) auto_approve: bool,
}

async fn apply_locked(
    g: &GlobalArgs,
    desired: &DesiredState,
    args: &ApplyArgs,
    run: LockedRun<'_>,
) -> anyhow::Result<Exit> {
    let LockedRun {
        identities,
        store,
        vapi,
        lock,
        run_id,
        stop,
        saved,
        auto_approve,
    } = run;
    let plan = pipeline::plan(store, vapi, desired, identities).await?;
    if let Some(saved) = &saved {
        if store.plan_claimed(&saved.plan_id).await? {
            eprintln!("{REPLAYED}");
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
    // A saved plan is used up only when it is carried out: one refused by a gate above, or
    // stopped before anything started, can be retried (issue 9, defect 8).
    if stop.load(Ordering::SeqCst) {
        eprintln!("Stopped before applying; nothing was changed.");
        return Ok(Exit::Error);
    }
    if let Some(saved) = &saved
        && !store
            .claim_plan(&saved.plan_id, desired.owner, &run_id)
            .await?
    {
        eprintln!("{REPLAYED}");
        return Ok(Exit::Refused);
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
    let again = pipeline::plan(store, vapi, desired, identities)
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

fn confirm() -> anyhow::Result<bool> {
    eprint!("Apply these changes? Only `yes` is accepted: ");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// Ctrl-C or SIGTERM: finish what is in flight, start nothing new. The returned future completes
/// on the signal (never, if signals cannot be watched).
fn spawn_stop_on_signal(
    stop: Arc<AtomicBool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
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
        let _ = tx.send(true);
    });
    async move {
        if rx.wait_for(|signalled| *signalled).await.is_err() {
            // The watcher gave up (no signal handling here): never interrupt.
            std::future::pending::<()>().await;
        }
    }
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
