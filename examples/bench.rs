//! How vapictl scales: a no-op plan over thousands of numbers, and creates applied in parallel.
//!
//! Run it with `cargo run --release --example bench` (`-- --quick` for a short run, `-- --help`
//! for the sizes, latency and parallelism it takes). Everything runs against the in-process Vapi
//! stand-in and a temporary SQLite database, driving the library (pipeline and `Applier`) as the
//! CLI does.
//!
//! The bench process only prepares each scenario: it hosts the stand-in, writes the spec and
//! seeds Vapi (through the stand-in's model) and the database (through `Store::insert_row`). Each
//! measurement then runs in a child process of its own (`bench --scenario …`), so that the peak
//! resident memory it reports (`VmHWM`) is that of one plan or one apply and nothing else: not the
//! stand-in's copy of the numbers, not the seeding, not an earlier scenario.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;
use standin::vapi::{FaultConfig, StandIn, StandInConfig};
use uuid::Uuid;
use vapictl::apply::{Applier, ApplyOptions, NoProgress};
use vapictl::pipeline;
use vapictl::secrets::{Identities, SecretValue, encrypt, parse_recipients, token_digest};
use vapictl::spec::{self, Defaults, PhoneNumberSpec, Spec, TwilioSpec};
use vapictl::state::{DesiredState, RowWrite};
use vapictl::store::{LockHolder, Store, StoreOptions};
use vapictl::validate::SecretMode;
use vapictl::vapi::{VapiClient, VapiConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const OWNER: &str = "3f1c2b7e-0000-4000-8000-000000000001";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// The owner's assistants; numbers are spread over them.
const ASSISTANTS: [&str; 3] = ["sales-bot", "support-bot", "after-hours"];
/// High enough that the client-side limiter never holds an apply back here (16 creates in
/// flight at 50 ms each is 320 calls per second); the largest value the CLI accepts.
const UNTHROTTLED_RPS: u32 = 10_000;

#[derive(Debug, Parser)]
#[command(about = "Measure vapictl's no-op plan and parallel apply against the local stand-in")]
struct Args {
    /// Short run: no-op plans over 1,000 numbers, 200 creates at 20 ms, one repetition (overrides
    /// `--sizes`, `--creates`, `--latency-ms` and `--repeat`).
    #[arg(long)]
    quick: bool,
    /// Numbers in the no-op plans (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
    /// Stand-in latency during the no-op plans, in milliseconds.
    #[arg(long, default_value_t = 0)]
    plan_latency_ms: u64,
    /// Creates in each apply run.
    #[arg(long, default_value_t = 1000)]
    creates: usize,
    /// Stand-in latency during the apply runs, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// `--parallelism` of the apply runs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,16")]
    parallelism: Vec<usize>,
    /// Runs of each no-op plan; the median time and the largest memory are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Owners in the fleet no-op plans, each with 10 numbers (comma-separated; 0 skips).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    fleet_owners: Vec<usize>,
    /// Single-spec runs measured for the side-by-side comparison (the rest extrapolated).
    #[arg(long, default_value_t = 100)]
    fleet_singles: usize,
    /// Owners (10 numbers each) of the idle `vapictl serve` controller measured between
    /// reconciles (0 skips).
    #[arg(long, default_value_t = 1000)]
    serve_owners: usize,
    /// How long the idle controller is watched, in seconds.
    #[arg(long, default_value_t = 30)]
    serve_idle_secs: u64,

    // What a child process measures (set by the bench itself).
    #[arg(long, hide = true)]
    scenario: Option<Scenario>,
    #[arg(long, hide = true)]
    vapi_url: Option<String>,
    #[arg(long, hide = true)]
    api_key: Option<String>,
    #[arg(long, hide = true)]
    db: Option<String>,
    #[arg(long, hide = true)]
    spec: Option<PathBuf>,
    #[arg(long, hide = true)]
    identity: Option<PathBuf>,
    #[arg(long, hide = true)]
    limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Scenario {
    Noop,
    Apply,
    /// One `plan` over a directory of specs (`--spec DIR`).
    Fleet,
    /// The same specs planned one by one, each with its own observation (`--limit` of them).
    Singles,
    /// `vapictl serve`'s controller over a directory of specs (`--spec DIR`), until SIGTERM.
    Serve,
}

/// What a child reports, as one JSON line on stdout.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Measured {
    /// Reading and validating the spec (one token decrypted).
    load_ms: f64,
    /// Opening (and migrating) the database and building the client.
    connect_ms: f64,
    /// Observing Vapi and the database, and diffing.
    plan_ms: f64,
    /// Carrying out the plan (apply runs only).
    apply_ms: f64,
    changes: usize,
    list_requests: u64,
    db_queries: u64,
    throttled: u64,
    /// The plan after the apply is empty (apply runs only).
    converged: bool,
    failed: usize,
    peak_rss_kb: u64,
}

impl Measured {
    fn total_plan_ms(&self) -> f64 {
        self.load_ms + self.connect_ms + self.plan_ms
    }
}

fn main() -> Result<(), BoxError> {
    let mut args = Args::parse();
    if let Some(scenario) = args.scenario {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        if let Scenario::Serve = scenario {
            return runtime.block_on(serve_child(&args));
        }
        let measured = runtime.block_on(child(scenario, &args))?;
        println!("{}", serde_json::to_string(&measured)?);
        return Ok(());
    }
    if args.quick {
        args.sizes = vec![1000];
        args.creates = 200;
        args.latency_ms = 20;
        args.repeat = 1;
        args.fleet_owners = vec![100];
        args.fleet_singles = 20;
        args.serve_owners = 100;
        args.serve_idle_secs = 10;
    }
    parent(&args)
}

// ---- the parent: prepare, run children, report ------------------------------------------------

fn parent(args: &Args) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("# vapictl bench\n");
    println!("{}\n", machine());
    println!(
        "Release build: {}. Stand-in and SQLite in a temporary directory; each measurement in a child process.\n",
        if cfg!(debug_assertions) {
            "NO (debug: the figures are not representative)"
        } else {
            "yes"
        }
    );

    println!(
        "## No-op plan ({} ms stand-in latency; median of {} runs)\n",
        args.plan_latency_ms,
        args.repeat.max(1)
    );
    println!(
        "| numbers | wall | load+validate | connect | observe+diff | list requests | DB queries | peak RSS | seeding |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for &n in &args.sizes {
        let world = World::new(&runtime)?;
        let seeded = Instant::now();
        let spec = world.write_spec(n)?;
        let desired = world.desired(&spec)?;
        runtime.block_on(world.seed_converged(&desired))?;
        let seeding = seeded.elapsed();
        world.vapi.set_faults(FaultConfig {
            latency_ms: args.plan_latency_ms,
            ..FaultConfig::default()
        });
        let mut runs = Vec::new();
        let mut lists = String::new();
        for _ in 0..args.repeat.max(1) {
            world.vapi.reset_log();
            let m = world.run_child(Scenario::Noop, &spec, &[])?;
            if m.changes != 0 {
                return Err(
                    format!("the no-op plan over {n} numbers has {} changes", m.changes).into(),
                );
            }
            lists = world.list_breakdown(m.list_requests);
            runs.push(m);
        }
        runs.sort_by(|a, b| a.total_plan_ms().total_cmp(&b.total_plan_ms()));
        let peak = runs.iter().map(|m| m.peak_rss_kb).max().unwrap_or(0);
        let m = &runs[runs.len() / 2];
        println!(
            "| {n} | {} | {} | {} | {} | {lists} | {} | {} | {} |",
            secs(m.total_plan_ms()),
            secs(m.load_ms),
            secs(m.connect_ms),
            secs(m.plan_ms),
            m.db_queries,
            mib(peak),
            secs(seeding.as_secs_f64() * 1000.0),
        );
    }

    fleet_section(args, &runtime)?;
    serve_section(args, &runtime)?;

    println!(
        "\n## Apply of {} creates ({} ms stand-in latency; client limit {UNTHROTTLED_RPS} calls/s, never the bottleneck)\n",
        args.creates, args.latency_ms
    );
    println!("Lower bound: creates × latency / parallelism (the POSTs alone, back to back).\n");
    println!("| parallelism | wall | lower bound | ratio | peak RSS | converged |");
    println!("|---:|---:|---:|---:|---:|---|");
    for &p in &args.parallelism {
        let world = World::new(&runtime)?;
        let spec = world.write_spec(args.creates)?;
        let desired = world.desired(&spec)?;
        runtime.block_on(world.seed_assistants(&desired))?;
        world.vapi.set_faults(FaultConfig {
            latency_ms: args.latency_ms,
            ..FaultConfig::default()
        });
        let m = world.run_child(Scenario::Apply, &spec, &["--parallelism", &p.to_string()])?;
        if m.changes != args.creates || m.failed != 0 || m.throttled != 0 || !m.converged {
            return Err(format!(
                "apply with parallelism {p}: {} changes, {} failed, {} throttled, converged: {}",
                m.changes, m.failed, m.throttled, m.converged
            )
            .into());
        }
        let bound = (args.creates as f64) * (args.latency_ms as f64) / (p.max(1) as f64);
        println!(
            "| {p} | {} | {} | {:.2} | {} | yes |",
            secs(m.apply_ms),
            secs(bound),
            m.apply_ms / bound.max(f64::MIN_POSITIVE),
            mib(m.peak_rss_kb),
        );
    }
    println!(
        "\nWall times exclude seeding; the apply time excludes the plan before it and the re-plan after it."
    );
    Ok(())
}

/// One scenario's surroundings: a stand-in, a database, an age key.
struct World {
    dir: tempfile::TempDir,
    vapi: StandIn,
    db_url: String,
    store: Store,
    identity_file: PathBuf,
    armored: String,
}

impl World {
    fn new(runtime: &tokio::runtime::Runtime) -> Result<Self, BoxError> {
        let dir = tempfile::tempdir()?;
        let vapi = StandIn::start_background(StandInConfig::default())?;
        let db_url = format!("sqlite://{}", dir.path().join("app.db").display());
        let store = runtime.block_on(Store::connect(&db_url, &StoreOptions::default()))?;
        use age::secrecy::ExposeSecret;
        let key = age::x25519::Identity::generate();
        let identity_file = dir.path().join("age-key.txt");
        std::fs::write(
            &identity_file,
            format!("{}\n", key.to_string().expose_secret()),
        )?;
        let armored = encrypt(
            &parse_recipients(&[key.to_public().to_string()])?,
            &SecretValue::new(TOKEN),
        )?;
        Ok(World {
            dir,
            vapi,
            db_url,
            store,
            identity_file,
            armored,
        })
    }

    /// A spec of `n` numbers sharing the default Twilio account, spread over the assistants.
    fn write_spec(&self, n: usize) -> Result<PathBuf, BoxError> {
        let entries = (0..n)
            .map(|i| {
                let mut e = entry(number(i), format!("Line {i}"));
                e.assistant = Some(ASSISTANTS[i % ASSISTANTS.len()].to_owned());
                e
            })
            .collect();
        let path = self.dir.path().join("spec.yaml");
        std::fs::write(&path, self.spec_yaml(OWNER, entries))?;
        Ok(path)
    }

    /// A spec whose entries share the default Twilio account, written by vapictl's own writer.
    fn spec_yaml(&self, owner: &str, phone_numbers: Vec<PhoneNumberSpec>) -> String {
        spec::to_yaml(&Spec {
            version: 1,
            owner: owner.to_owned(),
            defaults: Some(Defaults {
                twilio: Some(TwilioSpec {
                    account_sid: ACCOUNT_SID.to_owned(),
                    auth_token: Some(self.armored.clone()),
                    api_key: None,
                    api_secret: None,
                }),
                ..Defaults::default()
            }),
            phone_numbers,
        })
    }

    fn desired(&self, spec: &Path) -> Result<DesiredState, BoxError> {
        let mut ids = Identities::none();
        ids.add_file(&self.identity_file)?;
        Ok(pipeline::load_desired(spec, &ids, SecretMode::Required)?.1)
    }

    /// The owner's assistants, in Vapi and as `assistants` rows.
    async fn seed_assistants(
        &self,
        desired: &DesiredState,
    ) -> Result<Vec<(Uuid, String)>, BoxError> {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await?;
        let mut out = Vec::new();
        for name in ASSISTANTS {
            let vapi_id = self.vapi.seed_assistant(name);
            let row_id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO assistants (id, user_id, name, vapi_assistant_id) VALUES (?, ?, ?, ?)",
            )
            .bind(row_id.to_string())
            .bind(desired.owner.to_string())
            .bind(name)
            .bind(&vapi_id)
            .execute(&mut conn)
            .await?;
            out.push((row_id, vapi_id));
        }
        Ok(out)
    }

    /// Makes Vapi and the database hold exactly what `desired` asks for.
    async fn seed_converged(&self, desired: &DesiredState) -> Result<(), BoxError> {
        let assistants = self.seed_assistants(desired).await?;
        let plaintext = SecretValue::new(TOKEN);
        for d in desired.numbers.values() {
            let (row_id, vapi_assistant) = &assistants[index_of(&d.assistant)];
            let id = self.vapi.seed_raw(json!({
                "provider": "twilio",
                "number": d.number.as_str(),
                "name": d.name,
                "twilioAccountSid": d.twilio.account_sid,
                "assistantId": vapi_assistant,
            }))?;
            let row = RowWrite {
                phone_number: d.number.as_str().to_string(),
                friendly_name: d.name.clone(),
                vapi_phone_id: Some(id),
                vapi_credential_id: None,
                twilio_account_sid: d.twilio.account_sid.clone(),
                twilio_auth_token: d.twilio.auth_token.armored.clone(),
                api_key: None,
                api_secret: None,
                token_digest: Some(token_digest(&plaintext)),
                assigned_assistant_id: Some(*row_id),
                assigned_squad_id: None,
                notes: None,
                protected: false,
                applied: None,
            };
            self.store.insert_row(desired.owner, &row).await?;
        }
        Ok(())
    }

    /// Runs one measurement in a child process.
    fn run_child(
        &self,
        scenario: Scenario,
        spec: &Path,
        extra: &[&str],
    ) -> Result<Measured, BoxError> {
        let scenario = match scenario {
            Scenario::Noop => "noop",
            Scenario::Apply => "apply",
            Scenario::Fleet => "fleet",
            Scenario::Singles => "singles",
            Scenario::Serve => "serve",
        };
        let out = Command::new(std::env::current_exe()?)
            .args(["--scenario", scenario])
            .args(["--vapi-url", &self.vapi.base_url()])
            .args(["--api-key", self.vapi.api_key()])
            .args(["--db", &self.db_url])
            .arg("--spec")
            .arg(spec)
            .arg("--identity")
            .arg(&self.identity_file)
            .args(extra)
            .output()?;
        std::io::stderr().write_all(&out.stderr)?;
        if !out.status.success() {
            return Err(format!("the {scenario} child failed ({})", out.status).into());
        }
        let text = String::from_utf8(out.stdout)?;
        let line = text.lines().last().ok_or("the child printed nothing")?;
        Ok(serde_json::from_str(line)?)
    }

    /// The child's list requests as the stand-in saw them, by route.
    fn list_breakdown(&self, counted: u64) -> String {
        let log = self.vapi.request_log();
        let gets = |path: &str| {
            log.iter()
                .filter(|r| r.method == "GET" && r.path == path)
                .count()
        };
        let (pages, v2, assistants, squads) = (
            gets("/phone-number"),
            gets("/v2/phone-number"),
            gets("/assistant"),
            gets("/squad"),
        );
        let seen = pages + v2 + assistants + squads;
        let mismatch = if seen as u64 == counted {
            String::new()
        } else {
            format!(" (client counted {counted})")
        };
        format!(
            "{seen}: {} of numbers ({v2} numbered, with the total) + {assistants} of assistants + {squads} of squads{mismatch}",
            pages + v2
        )
    }
}

fn index_of(assistant: &Option<String>) -> usize {
    assistant
        .as_deref()
        .and_then(|a| ASSISTANTS.iter().position(|n| *n == a))
        .unwrap_or(0)
}

/// A distinct, valid US number for each `i` below 20,000.
/// An entry with a number and a name, nothing else.
fn entry(number: String, name: String) -> PhoneNumberSpec {
    PhoneNumberSpec {
        number,
        name,
        ..PhoneNumberSpec::default()
    }
}

fn number(i: usize) -> String {
    let area = [415, 628][i / 10_000 % 2];
    format!("+1{area}555{:04}", i % 10_000)
}

// ---- the child: one measurement ---------------------------------------------------------------

async fn child(scenario: Scenario, args: &Args) -> Result<Measured, BoxError> {
    let need =
        |v: &Option<String>, name: &str| v.clone().ok_or_else(|| format!("--{name} is required"));
    let spec = args.spec.clone().ok_or("--spec is required")?;
    let identity = args.identity.clone().ok_or("--identity is required")?;
    let mut m = Measured::default();

    match scenario {
        Scenario::Fleet | Scenario::Singles => {
            return fleet_child(scenario, args, &spec, &identity).await;
        }
        Scenario::Serve => return Err("the serve scenario reports through /metrics".into()),
        Scenario::Noop | Scenario::Apply => {}
    }
    let t = Instant::now();
    let mut ids = Identities::none();
    ids.add_file(&identity)?;
    let mode = match scenario {
        Scenario::Noop | Scenario::Fleet | Scenario::Singles => SecretMode::Optional,
        Scenario::Apply | Scenario::Serve => SecretMode::Required,
    };
    let (_, desired) = pipeline::load_desired(&spec, &ids, mode)?;
    m.load_ms = ms(t.elapsed());

    let t = Instant::now();
    let store = Store::connect(&need(&args.db, "db")?, &StoreOptions::default()).await?;
    let mut cfg = VapiConfig::new(
        need(&args.vapi_url, "vapi-url")?,
        SecretValue::new(need(&args.api_key, "api-key")?),
    );
    cfg.max_rps = UNTHROTTLED_RPS;
    let vapi = VapiClient::new(cfg)?;
    m.connect_ms = ms(t.elapsed());

    match scenario {
        Scenario::Noop => {
            let t = Instant::now();
            let plan = pipeline::plan(&store, &vapi, &desired, &ids).await?;
            m.plan_ms = ms(t.elapsed());
            m.changes = plan.changes.len();
            m.list_requests = vapi.counters().list_requests.load(Ordering::Relaxed);
            m.db_queries = store.queries_issued();
        }
        Scenario::Apply => {
            // As `vapictl apply` does: plan and apply under the owner's lock.
            let lock = store
                .acquire_lock(
                    desired.owner,
                    &LockHolder::this_process(Uuid::new_v4().to_string()),
                    Duration::from_secs(10),
                )
                .await?;
            let t = Instant::now();
            let plan = pipeline::plan(&store, &vapi, &desired, &ids).await?;
            m.plan_ms = ms(t.elapsed());
            m.changes = plan.changes.len();
            let applier = Applier {
                vapi: &vapi,
                store: &store,
                owner: desired.owner,
                options: ApplyOptions {
                    parallelism: args.parallelism.first().copied().unwrap_or(8),
                    ..ApplyOptions::default()
                },
                lock: Some(&lock),
            };
            let t = Instant::now();
            let report = applier.apply(&plan, &NoProgress).await;
            m.apply_ms = ms(t.elapsed());
            m.failed = report.failed() + report.not_started.len();
            m.throttled = vapi.rate_limit().throttled;
            m.converged = pipeline::plan(&store, &vapi, &desired, &ids)
                .await?
                .is_empty();
            lock.release().await?;
        }
        Scenario::Fleet | Scenario::Singles | Scenario::Serve => unreachable!("handled above"),
    }
    m.peak_rss_kb = peak_rss_kb();
    Ok(m)
}

/// `VmHWM` of this process: the most resident memory it has used, in KiB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

// ---- formatting -------------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn secs(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}

/// CPUs, CPU model and memory of this machine, from `/proc`.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0),
        );
    format!("Machine: {cpus} CPUs ({model}), {mem_gib} RAM.")
}

// ---- the fleet: one run over many owners versus one run per owner -----------------------------

/// Numbers per owner in the fleet scenarios.
const FLEET_PER_OWNER: usize = 10;

fn fleet_owner(i: usize) -> Uuid {
    Uuid::parse_str(&format!("3f1c2b7e-0000-4000-8000-{i:012}")).expect("a UUID")
}

fn fleet_section(args: &Args, runtime: &tokio::runtime::Runtime) -> Result<(), BoxError> {
    let sizes: Vec<usize> = args
        .fleet_owners
        .iter()
        .copied()
        .filter(|n| *n > 0)
        .collect();
    if sizes.is_empty() {
        return Ok(());
    }
    println!(
        "\n## Fleet: no-op plan over owners × {FLEET_PER_OWNER} numbers, one run versus one run per owner ({} ms stand-in latency)\n",
        args.plan_latency_ms
    );
    println!(
        "| owners | numbers | run | wall | load+validate | connect | observe+diff | list requests | DB queries | peak RSS |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let world = World::new(runtime)?;
        let dir = world.dir.path().join("vapi");
        std::fs::create_dir_all(&dir)?;
        for o in 0..n {
            world.write_owner_spec(&dir, o)?;
        }
        runtime.block_on(world.seed_fleet(n))?;
        world.vapi.set_faults(FaultConfig {
            latency_ms: args.plan_latency_ms,
            ..FaultConfig::default()
        });
        world.vapi.reset_log();
        let m = world.run_child(Scenario::Fleet, &dir, &[])?;
        if m.changes != 0 || m.failed != 0 {
            return Err(format!(
                "the fleet no-op plan over {n} owners has {} changes and {} failed owners",
                m.changes, m.failed
            )
            .into());
        }
        println!(
            "| {n} | {} | one fleet run | {} | {} | {} | {} | {} | {} | {} |",
            n * FLEET_PER_OWNER,
            secs(m.total_plan_ms()),
            secs(m.load_ms),
            secs(m.connect_ms),
            secs(m.plan_ms),
            world.list_breakdown(m.list_requests),
            m.db_queries,
            mib(m.peak_rss_kb),
        );
        let singles = args.fleet_singles.min(n);
        if singles == 0 {
            continue;
        }
        world.vapi.reset_log();
        let limit = singles.to_string();
        let m = world.run_child(Scenario::Singles, &dir, &["--limit", &limit])?;
        let scale = n as f64 / singles as f64;
        let extrapolated = if singles < n {
            format!(" (measured {singles}, × {scale:.0})")
        } else {
            String::new()
        };
        println!(
            "| {n} | {} | {n} single-spec runs{extrapolated} | {} | {} | {} | {} | {} | {} | {} |",
            n * FLEET_PER_OWNER,
            secs(m.total_plan_ms() * scale),
            secs(m.load_ms * scale),
            secs(m.connect_ms * scale),
            secs(m.plan_ms * scale),
            (m.list_requests as f64 * scale).round(),
            (m.db_queries as f64 * scale).round(),
            mib(m.peak_rss_kb),
        );
    }
    println!(
        "\nThe single-spec runs are measured in one process (one connection, one client), which favours them: the CLI also starts a process and connects once per owner."
    );
    Ok(())
}

impl World {
    /// Owner `o`'s spec: 10 numbers of its own, no assistant.
    fn write_owner_spec(&self, dir: &Path, o: usize) -> Result<(), BoxError> {
        let entries = (o * FLEET_PER_OWNER..(o + 1) * FLEET_PER_OWNER)
            .map(|i| entry(fleet_number(i), format!("Line {i}")))
            .collect();
        let y = self.spec_yaml(&fleet_owner(o).to_string(), entries);
        std::fs::write(dir.join(format!("owner-{o:05}.yaml")), y)?;
        Ok(())
    }

    /// Vapi and the database holding exactly what every owner's spec asks for; the rows go in
    /// one transaction (seeding is not what is measured).
    async fn seed_fleet(&self, owners: usize) -> Result<(), BoxError> {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await?;
        let mut tx = conn.begin().await?;
        let digest = token_digest(&SecretValue::new(TOKEN));
        let now = "2026-01-01T00:00:00.000000Z";
        for o in 0..owners {
            for i in o * FLEET_PER_OWNER..(o + 1) * FLEET_PER_OWNER {
                let number = fleet_number(i);
                let name = format!("Line {i}");
                let id = self.vapi.seed_raw(json!({
                    "provider": "twilio",
                    "number": number,
                    "name": name,
                    "twilioAccountSid": ACCOUNT_SID,
                }))?;
                sqlx::query(
                    "INSERT INTO phone_numbers (id, user_id, phone_number, friendly_name, provider, \
                     vapi_phone_id, twilio_account_sid, twilio_auth_token, vapictl_token_digest, \
                     vapictl_protected, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, 'twilio', ?, ?, ?, ?, 0, ?, ?)",
                )
                .bind(Uuid::new_v4().to_string())
                .bind(fleet_owner(o).to_string())
                .bind(&number)
                .bind(&name)
                .bind(&id)
                .bind(ACCOUNT_SID)
                .bind(&self.armored)
                .bind(&digest)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A distinct, valid number for each `i` below 1,000,000 (10,000 per area code).
fn fleet_number(i: usize) -> String {
    const AREAS: [u32; 10] = [415, 628, 510, 650, 408, 707, 925, 209, 530, 559];
    format!("+1{}555{:04}", AREAS[i / 10_000 % AREAS.len()], i % 10_000)
}

async fn fleet_child(
    scenario: Scenario,
    args: &Args,
    dir: &Path,
    identity: &Path,
) -> Result<Measured, BoxError> {
    let need =
        |v: &Option<String>, name: &str| v.clone().ok_or_else(|| format!("--{name} is required"));
    let mut m = Measured::default();
    let t = Instant::now();
    let mut ids = Identities::none();
    ids.add_file(identity)?;
    let files = vapictl::run::specs::expand(&[dir.to_path_buf()])?;
    let files = match (scenario, args.limit) {
        (Scenario::Singles, Some(limit)) => files.into_iter().take(limit).collect(),
        _ => files,
    };
    let loaded = vapictl::run::specs::load(&files, &ids, SecretMode::Optional)?;
    m.failed = loaded.failed.len();
    m.load_ms = ms(t.elapsed());

    let t = Instant::now();
    let store = Store::connect(&need(&args.db, "db")?, &StoreOptions::default()).await?;
    let mut cfg = VapiConfig::new(
        need(&args.vapi_url, "vapi-url")?,
        SecretValue::new(need(&args.api_key, "api-key")?),
    );
    cfg.max_rps = UNTHROTTLED_RPS;
    let vapi = VapiClient::new(cfg)?;
    m.connect_ms = ms(t.elapsed());

    let t = Instant::now();
    match scenario {
        Scenario::Fleet => {
            let observation = vapictl::run::observe(&store, &vapi).await?;
            for o in &loaded.owners {
                match observation.plan(&o.desired, &ids) {
                    Ok(plan) => m.changes += plan.changes.len(),
                    Err(_) => m.failed += 1,
                }
            }
        }
        _ => {
            for o in &loaded.owners {
                m.changes += pipeline::plan(&store, &vapi, &o.desired, &ids)
                    .await?
                    .changes
                    .len();
            }
        }
    }
    m.plan_ms = ms(t.elapsed());
    m.list_requests = vapi.counters().list_requests.load(Ordering::Relaxed);
    m.db_queries = store.queries_issued();
    m.peak_rss_kb = peak_rss_kb();
    Ok(m)
}

// ---- the idle controller ----------------------------------------------------------------------

/// `vapictl serve` over `owners` × 10 numbers, already converged: its first reconcile, then its
/// memory and CPU while it waits for the next one, then how fast SIGTERM stops it.
fn serve_section(args: &Args, runtime: &tokio::runtime::Runtime) -> Result<(), BoxError> {
    let owners = args.serve_owners;
    if owners == 0 {
        return Ok(());
    }
    let world = World::new(runtime)?;
    let dir = world.dir.path().join("vapi");
    std::fs::create_dir_all(&dir)?;
    for o in 0..owners {
        world.write_owner_spec(&dir, o)?;
    }
    runtime.block_on(world.seed_fleet(owners))?;
    // reqwest (reading /metrics) needs a process-wide TLS provider, as the Vapi client installs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--scenario", "serve"])
        .args(["--vapi-url", &world.vapi.base_url()])
        .args(["--api-key", world.vapi.api_key()])
        .args(["--db", &world.db_url])
        .arg("--spec")
        .arg(&dir)
        .arg("--identity")
        .arg(&world.identity_file)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let result = (|| -> Result<(), BoxError> {
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| format!("the serve child said {line:?}"))?
            .to_owned();
        let started = Instant::now();
        let metrics = loop {
            let text = runtime.block_on(async {
                reqwest::get(format!("http://{addr}/metrics"))
                    .await?
                    .text()
                    .await
            })?;
            if sample(&text, "vapictl_reconcile_total{result=\"success\"}") >= 1.0 {
                break text;
            }
            for bad in ["error", "refused"] {
                if sample(
                    &text,
                    &format!("vapictl_reconcile_total{{result=\"{bad}\"}}"),
                ) > 0.0
                {
                    return Err(format!("the controller's first reconcile ended `{bad}`").into());
                }
            }
            if started.elapsed() > Duration::from_secs(600) {
                return Err("the controller never finished a reconcile".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let first = started.elapsed();
        let applied: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("vapictl_changes_applied_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if applied != 0.0
            || sample(&metrics, "vapictl_managed_numbers") != (owners * FLEET_PER_OWNER) as f64
        {
            return Err(
                format!("the converged fleet was changed or miscounted:\n{metrics}").into(),
            );
        }
        let peak_after_reconcile = proc_status_kb(pid, "VmHWM");
        // Idle: between reconciles (the interval is an hour).
        let cpu0 = cpu_ns(pid)?;
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(args.serve_idle_secs.max(1)));
        let cpu = cpu_ns(pid)? - cpu0;
        let idle_cpu = cpu as f64 / t0.elapsed().as_nanos() as f64;
        let rss = proc_status_kb(pid, "VmRSS");
        let stopping = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !killed.success() {
            return Err("kill -TERM failed".into());
        }
        let status = child.wait()?;
        let stop = stopping.elapsed();
        if !status.success() {
            return Err(format!("the controller exited with {status} on SIGTERM").into());
        }
        println!(
            "\n## Idle controller: `vapictl serve` over {owners} owners × {FLEET_PER_OWNER} numbers, between reconciles\n"
        );
        println!(
            "| numbers | first reconcile (no-op) | peak RSS (first reconcile) | idle RSS | idle CPU | SIGTERM to exit |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {} | {:.1} ms in {}s ({:.3}% of one core) | {} |",
            owners * FLEET_PER_OWNER,
            secs(ms(first)),
            mib(peak_after_reconcile),
            mib(rss),
            cpu as f64 / 1e6,
            args.serve_idle_secs.max(1),
            idle_cpu * 100.0,
            secs(ms(stop)),
        );
        Ok(())
    })();
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// A sample's value in OpenMetrics text (0 when absent).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Time process `pid` has run on a CPU, in nanoseconds (`/proc/PID/schedstat`).
fn cpu_ns(pid: u32) -> Result<u64, BoxError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    Ok(text
        .split_whitespace()
        .next()
        .ok_or("empty schedstat")?
        .parse()?)
}

/// A `kB` field of `/proc/PID/status` (0 when unknown).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The child side: the library's controller, exactly as `vapictl serve` runs it (an hour's
/// interval, so that it idles after its first reconcile), until SIGTERM.
async fn serve_child(args: &Args) -> Result<(), BoxError> {
    use vapictl::serve::{Controller, ServeSettings};
    let need =
        |v: &Option<String>, name: &str| v.clone().ok_or_else(|| format!("--{name} is required"));
    let identity = args.identity.clone().ok_or("--identity is required")?;
    let mut vapi = VapiConfig::new(
        need(&args.vapi_url, "vapi-url")?,
        SecretValue::new(need(&args.api_key, "api-key")?),
    );
    vapi.max_rps = UNTHROTTLED_RPS;
    // The bench measures the controller against the Vapi stand-in alone: no Twilio.
    let twilio = vapictl::twilio::Preflight::new(None, &vapi.base_url);
    let settings = ServeSettings {
        specs: vec![args.spec.clone().ok_or("--spec is required")?],
        interval: Duration::from_secs(3600),
        listen: "127.0.0.1:0".parse()?,
        drift_only: false,
        lease_ttl: vapictl::serve::DEFAULT_LEASE_TTL,
        token: None,
        database_url: need(&args.db, "db")?,
        vapi,
        identities: Box::new(move || {
            let mut ids = Identities::none();
            ids.add_file(&identity)?;
            Ok(ids)
        }),
        parallelism: 8,
        twilio,
    };
    let controller = Controller::bind(settings).await?;
    let addr = controller.local_addr().ok_or("no address")?;
    println!("listening {addr}");
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    controller
        .run(async move {
            term.recv().await;
        })
        .await?;
    Ok(())
}
