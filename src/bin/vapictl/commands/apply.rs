//! `vapictl apply`: make Vapi and the database match a spec, or apply a saved plan.

use std::collections::BTreeMap;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vapictl::apply::{Outcome, Progress};
use vapictl::pipeline;
use vapictl::plan::{Change, Plan};
use vapictl::render::{
    ApplyEntry, RunEntry, RunKind, RunView, Style, render_apply_report, render_plan_text,
    render_run_apply_report, render_run_text,
};
use vapictl::run::{self, ApplyHooks, ApplyRun, OwnerOutcome, OwnerSpec, SavedRun, Verdict};
use vapictl::saved::SavedPlan;
use vapictl::store::LockWaitEvent;
use vapictl::validate::SecretMode;

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

pub(crate) async fn run(
    g: &GlobalArgs,
    paths: &[PathBuf],
    args: ApplyArgs,
) -> anyhow::Result<Exit> {
    if let [path] = paths
        && !path.is_dir()
    {
        // A saved plan names its spec (a saved run plan, its specs); anything else is a spec.
        let bytes = std::fs::read(path).unwrap_or_default();
        let damaged = |e: String| {
            anyhow::anyhow!(
                "`{}`: {e}\nhint: make a new plan with `vapictl plan --out FILE`",
                path.display()
            )
        };
        if let Some(saved_run) = SavedRun::parse(&bytes).map_err(damaged)? {
            return run_saved_fleet(g, saved_run, args).await;
        }
        let saved = SavedPlan::parse(&bytes).map_err(damaged)?;
        return run_single(g, path, saved, args).await;
    }
    let identities = settings::identities(g)?;
    let files = run::specs::expand(paths)?;
    let loaded = run::specs::load(&files, &identities, SecretMode::Required)?;
    run_fleet(g, loaded, identities, BTreeMap::new(), args).await
}

/// One spec (or one saved plan): today's output, exactly.
async fn run_single(
    g: &GlobalArgs,
    path: &Path,
    saved: Option<SavedPlan>,
    args: ApplyArgs,
) -> anyhow::Result<Exit> {
    let spec_path = match &saved {
        Some(s) => PathBuf::from(&s.spec_path),
        None => path.to_path_buf(),
    };
    // A saved plan was reviewed: it is applied without asking.
    let auto_approve = args.auto_approve || saved.is_some();
    let identities = settings::identities(g)?;
    let (_, desired) = pipeline::load_desired(&spec_path, &identities, SecretMode::Required)?;
    let owner = OwnerSpec {
        path: spec_path,
        desired,
    };
    let saved: BTreeMap<_, _> = saved
        .map(|s| (owner.desired.owner, s))
        .into_iter()
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let settings = settings::apply_settings(&args, auto_approve, stop.clone());
    let run = ApplyRun::new(settings, false, vec![owner], saved)
        .with_identities(identities)
        .with_twilio(settings::twilio(g)?);
    let outcomes = execute(g, run, stop, auto_approve, &SingleHooks { g }).await?;
    let Some((_, outcome)) = outcomes.into_iter().next() else {
        return Ok(Exit::Ok);
    };
    let style = Style {
        color: settings::stdout_color(g),
    };
    if let Some(report) = outcome.report() {
        let mut out = io::stdout().lock();
        render_apply_report(report, &style, &mut out)?;
        out.flush()?;
    }
    let verdict = outcome.verdict();
    match outcome {
        OwnerOutcome::Failed(e) => return Err(e.into()),
        OwnerOutcome::ReplanFailed { error, .. } => {
            return Err(anyhow::Error::from(error).context("re-reading after apply"));
        }
        OwnerOutcome::Refused { refusal, .. } => eprintln!("error: {refusal}"),
        OwnerOutcome::Cancelled(_) => eprintln!("Apply cancelled; nothing was changed."),
        OwnerOutcome::Stopped(_) => eprintln!("Stopped before applying; nothing was changed."),
        OwnerOutcome::NotConverged { remaining, .. } => eprintln!(
            "error: apply finished but {remaining} change(s) remain; run `vapictl plan` to see them"
        ),
        OwnerOutcome::NoChanges(_)
        | OwnerOutcome::Applied { .. }
        | OwnerOutcome::Partial { .. } => {}
    }
    Ok(verdict.into())
}

/// The binary's side of a single-spec apply: the plan as text, the `yes` prompt, a progress bar.
struct SingleHooks<'a> {
    g: &'a GlobalArgs,
}

impl ApplyHooks for SingleHooks<'_> {
    fn planned(&self, plans: &[(&OwnerSpec, &Plan)]) -> io::Result<()> {
        let style = Style {
            color: settings::stdout_color(self.g),
        };
        let mut out = io::stdout().lock();
        for (_, plan) in plans {
            render_plan_text(plan, &style, &mut out)?;
        }
        out.flush()
    }

    fn confirm(&self) -> io::Result<bool> {
        confirm()
    }

    fn progress(&self, _owner: &OwnerSpec, total: usize) -> Box<dyn Progress + '_> {
        Box::new(StderrProgress::new(total, self.g.quiet))
    }

    fn lock_wait(&self, _owner: &OwnerSpec, event: &LockWaitEvent) {
        if !self.g.quiet {
            eprintln!("{event}");
        }
    }
}

/// A saved run plan: every owner's part checked and applied on its own.
async fn run_saved_fleet(g: &GlobalArgs, saved: SavedRun, args: ApplyArgs) -> anyhow::Result<Exit> {
    let identities = settings::identities(g)?;
    let files: Vec<PathBuf> = saved
        .plans
        .iter()
        .map(|p| PathBuf::from(&p.spec_path))
        .collect();
    let loaded = run::specs::load(&files, &identities, SecretMode::Required)?;
    let by_owner = saved.plans.into_iter().map(|p| (p.owner, p)).collect();
    // A saved plan was reviewed: it is applied without asking.
    let args = ApplyArgs {
        auto_approve: true,
        ..args
    };
    run_fleet(g, loaded, identities, by_owner, args).await
}

/// Carries out `run`: without a connection when every owner's outcome is already decided;
/// otherwise (refusing a non-terminal that would have to confirm) connects and applies, with
/// `hooks` for what the user sees. From then on Ctrl-C or SIGTERM (which set `stop`) stops
/// cleanly: in-flight changes finish, no new one starts; a wait for a lock ends at once.
async fn execute(
    g: &GlobalArgs,
    run: ApplyRun,
    stop: Arc<AtomicBool>,
    auto_approve: bool,
    hooks: &dyn ApplyHooks,
) -> anyhow::Result<Vec<(OwnerSpec, OwnerOutcome)>> {
    if !run.needs_connection() {
        return Ok(run.without_connection());
    }
    if !auto_approve && !io::stdin().is_terminal() {
        anyhow::bail!(
            "apply needs confirmation, but stdin is not a terminal\nhint: review with `vapictl plan`, then run `vapictl apply --auto-approve` in pipelines"
        );
    }
    let stopped = spawn_stop_on_signal(stop);
    let (store, vapi) = connect(g).await?;
    Ok(run
        .interrupted_by(stopped)
        .execute(&store, &vapi, hooks)
        .await?)
}

/// Several specs: each owner under its own lock, concurrently, one report.
async fn run_fleet(
    g: &GlobalArgs,
    loaded: run::LoadedRun,
    identities: vapictl::secrets::Identities,
    saved: BTreeMap<uuid::Uuid, SavedPlan>,
    args: ApplyArgs,
) -> anyhow::Result<Exit> {
    let run::LoadedRun { owners, failed } = loaded;
    let auto_approve = args.auto_approve;
    let stop = Arc::new(AtomicBool::new(false));
    let settings = settings::apply_settings(&args, auto_approve, stop.clone());
    let run = ApplyRun::new(settings, true, owners, saved)
        .with_identities(identities)
        .with_twilio(settings::twilio(g)?);
    let outcomes = execute(g, run, stop, auto_approve, &FleetHooks { g }).await?;
    let style = Style {
        color: settings::stdout_color(g),
    };
    let mut entries: Vec<ApplyEntry<'_>> = failed
        .iter()
        .map(|f| ApplyEntry {
            spec: f.spec.display().to_string(),
            owner: f.owner,
            outcome: Err(f.error.to_string().trim_end().to_string()),
        })
        .collect();
    entries.extend(outcomes.iter().map(|(o, outcome)| ApplyEntry {
        spec: o.path.display().to_string(),
        owner: Some(o.desired.owner),
        outcome: Ok(outcome),
    }));
    {
        let mut out = io::stdout().lock();
        render_run_apply_report(&entries, &style, &mut out)?;
        out.flush()?;
    }
    let mut verdict = run::apply::run_verdict(outcomes.iter().map(|(_, o)| o));
    if !failed.is_empty() {
        verdict = Verdict::Failed;
    }
    Ok(verdict.into())
}

/// The binary's side of a run over several owners: every plan as text with a section per
/// owner, one `yes` prompt, and a progress line per owner on stderr.
struct FleetHooks<'a> {
    g: &'a GlobalArgs,
}

impl ApplyHooks for FleetHooks<'_> {
    fn planned(&self, plans: &[(&OwnerSpec, &Plan)]) -> io::Result<()> {
        let style = Style {
            color: settings::stdout_color(self.g),
        };
        let view = RunView {
            kind: RunKind::Plan,
            entries: plans
                .iter()
                .map(|(o, p)| RunEntry {
                    spec: o.path.display().to_string(),
                    owner: Some(o.desired.owner),
                    result: Ok(*p),
                })
                .collect(),
            unmanaged: &[],
            orphans: &[],
        };
        let mut out = io::stdout().lock();
        render_run_text(&view, &style, &mut out)?;
        writeln!(out)?;
        out.flush()
    }

    fn confirm(&self) -> io::Result<bool> {
        confirm()
    }

    fn progress(&self, owner: &OwnerSpec, total: usize) -> Box<dyn Progress + '_> {
        Box::new(OwnerProgress {
            label: format!("{} (owner {})", owner.path.display(), owner.desired.owner),
            quiet: self.g.quiet,
            failed: std::sync::atomic::AtomicUsize::new(0),
            total,
        })
    }

    fn lock_wait(&self, _owner: &OwnerSpec, event: &LockWaitEvent) {
        if !self.g.quiet {
            eprintln!("{event}");
        }
    }
}

/// One line per owner on stderr when its apply ends (numbers in flight from many owners would
/// interleave line by line), plus a line for each failed number.
struct OwnerProgress {
    label: String,
    quiet: bool,
    failed: std::sync::atomic::AtomicUsize,
    total: usize,
}

impl Progress for OwnerProgress {
    fn started(&self, change: &Change) {
        let masked = vapictl::state::mask_number(&change.number);
        tracing::info!(owner = %self.label, number = %masked, action = change.action.label(), "applying");
    }
    fn finished(&self, outcome: &Outcome, done: usize, _total: usize) {
        if outcome.result.is_err() {
            self.failed.fetch_add(1, Ordering::SeqCst);
            if !self.quiet {
                eprintln!(
                    "{}: {} {} failed",
                    self.label,
                    outcome.action.label(),
                    vapictl::state::mask_number(&outcome.number)
                );
            }
        }
        if done == self.total && !self.quiet {
            let failed = self.failed.load(Ordering::SeqCst);
            eprintln!(
                "{}: {done}/{} change(s) done, {failed} failed",
                self.label, self.total
            );
        }
    }
}

fn confirm() -> io::Result<bool> {
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
    // The handlers are installed here, before anything is changed, not when the task first
    // runs: a signal arriving in between would otherwise kill the process mid-apply.
    #[cfg(unix)]
    let streams = {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Some((int, term)),
            _ => None,
        }
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let Some((mut int, mut term)) = streams else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
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
