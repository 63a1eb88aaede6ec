//! What the user typed: clap's view of the command line, nothing resolved yet.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vapictl",
    version,
    about = "Declarative Vapi phone numbers: plan and apply a YAML spec against Vapi and the app database",
    after_help = "Exit codes: 0 ok / no changes, 1 error, 2 changes present (plan --detailed-exitcode), 3 refused by a safety gate.
Environment: VAPI_API_KEY (or VAPI_TOKEN), VAPI_BASE_URL, TWILIO_BASE_URL, VAPICTL_TWILIO_CHECK, DATABASE_URL, VAPICTL_AGE_IDENTITY_FILE, VAPICTL_AGE_IDENTITY, VAPICTL_SERVE_TOKEN (serve), RUST_LOG, NO_COLOR."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Database URL: `sqlite://FILE` (created when missing) or `postgres://…`.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://vapictl.db"
    )]
    pub database_url: String,

    /// Vapi API base URL.
    #[arg(
        long,
        global = true,
        env = "VAPI_BASE_URL",
        default_value = "https://api.vapi.ai"
    )]
    pub vapi_url: String,

    /// Twilio API base URL (read only: the preflight and Twilio-side drift).
    #[arg(
        long,
        global = true,
        env = "TWILIO_BASE_URL",
        default_value = vapictl::twilio::DEFAULT_BASE_URL
    )]
    pub twilio_url: String,

    /// Check creates, adoptions and credential changes against Twilio before anything is
    /// written (needs an identity), and report Twilio-side drift: on, or off (no Twilio request).
    #[arg(
        long,
        global = true,
        env = "VAPICTL_TWILIO_CHECK",
        value_enum,
        default_value_t = TwilioCheck::On
    )]
    pub twilio_check: TwilioCheck,

    /// age identity file to decrypt tokens with (repeatable). Also: VAPICTL_AGE_IDENTITY_FILE,
    /// or the key text itself in VAPICTL_AGE_IDENTITY.
    #[arg(long = "identity", short = 'i', global = true, value_name = "FILE")]
    pub identities: Vec<PathBuf>,

    /// Timeout of one Vapi request, in seconds.
    #[arg(
        long,
        global = true,
        env = "VAPICTL_VAPI_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub vapi_timeout: u64,

    /// Most mutating Vapi calls (create, update, delete) started per second. Halved whenever
    /// Vapi answers 429, then raised back gradually as calls succeed.
    #[arg(
        long,
        global = true,
        env = "VAPICTL_MAX_RPS",
        default_value_t = vapictl::vapi::DEFAULT_MAX_RPS,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
        value_name = "N"
    )]
    pub max_rps: u32,

    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less output on stderr: errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Colour: auto (when the output is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TwilioCheck {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check specs: every problem with file, line and column. Exit 0 valid, 1 invalid.
    Validate {
        /// Spec files (YAML), or directories of them (every `*.yaml`/`*.yml` under each,
        /// recursively; hidden ones skipped). One spec per owner.
        #[arg(required = true, value_name = "SPEC")]
        spec: Vec<PathBuf>,
    },
    /// Show what apply would change. Changes nothing. Over several specs: one report for all
    /// owners, from one read of Vapi and the database.
    Plan {
        /// Spec files, or directories of them (one spec per owner).
        #[arg(required = true, value_name = "SPEC")]
        spec: Vec<PathBuf>,
        /// Exit 0 when there are no changes, 2 when there are, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Output format: text (terminals, logs), markdown (pull-request comments), json.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also save the plan to FILE, for `vapictl apply FILE` (no secrets inside).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Longest markdown document, in characters (GitHub 65536; set your forge's limit).
        #[arg(long, default_value_t = 65_536, value_name = "N")]
        comment_limit: usize,
    },
    /// Report what differs between the spec and the database/Vapi, by cause. Changes nothing.
    /// Exit 0 in sync, 2 drift found, 1 error.
    Drift {
        /// Spec files, or directories of them (one spec per owner).
        #[arg(required = true, value_name = "SPEC")]
        spec: Vec<PathBuf>,
        /// Output format; json carries a stable fingerprint per finding.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Longest markdown document, in characters (GitHub 65536; set your forge's limit).
        #[arg(long, default_value_t = 65_536, value_name = "N")]
        comment_limit: usize,
    },
    /// Make Vapi and the database match the spec, or apply a plan saved with `plan --out`
    /// (exactly that plan: refused with exit 3 when anything changed since, or when it was
    /// applied before).
    Apply {
        /// The spec file, or a saved plan file; or several specs or directories of them, each
        /// owner applied under its own lock (exit 1 if any owner failed, else 3 if any was
        /// refused, else 0).
        #[arg(required = true, value_name = "SPEC|PLAN")]
        spec: Vec<PathBuf>,
        /// Apply without asking.
        #[arg(long)]
        auto_approve: bool,
        /// Numbers changed at once (over all owners of a run).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
        /// Confirm deleting exactly N numbers whose entries disappeared from the spec, when that
        /// is more than 5 or more than 25% of the owner's numbers. Over several specs: the
        /// total of the owners whose deletion gate tripped.
        #[arg(long, value_name = "N")]
        allow_deletes: Option<usize>,
        /// How long to wait for another apply on the same owner to finish, in seconds.
        #[arg(long, default_value_t = 120, value_name = "SECONDS")]
        lock_timeout: u64,
    },
    /// Show the audit trail of applied changes, newest first.
    History {
        /// Only changes to this number (matched by its last four digits, as stored).
        number: Option<String>,
        /// The owner (users.id); or give `--spec` to read it from a spec.
        #[arg(long, required_unless_present = "spec", value_name = "UUID")]
        owner: Option<String>,
        /// Read the owner from this spec.
        #[arg(long, value_name = "SPEC")]
        spec: Option<PathBuf>,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Write a spec (to stdout) for what an owner has in the database and Vapi; or, with
    /// `--all --out-dir DIR`, one spec per owner that has rows (`DIR/<owner>.yaml`).
    Import {
        /// The owner (users.id).
        #[arg(
            long,
            value_name = "UUID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        owner: Option<String>,
        /// Every owner that has rows in `phone_numbers`, one file each (needs `--out-dir`).
        #[arg(long, requires = "out_dir")]
        all: bool,
        /// Where `--all` writes its files; an existing file is never overwritten.
        #[arg(long, value_name = "DIR", requires = "all")]
        out_dir: Option<PathBuf>,
        /// Re-encrypt the tokens to these age recipients (repeatable; needs an identity that
        /// can decrypt the stored tokens). Without it, stored ciphertexts are kept as they are.
        #[arg(long = "recipient", short = 'r', value_name = "AGE1…")]
        recipients: Vec<String>,
        /// Also include Twilio numbers in Vapi that nobody manages, to take them over (their
        /// tokens are placeholders to fill in).
        #[arg(long)]
        adopt: bool,
    },
    /// Encrypt a secret read on stdin for the spec (prints the armored value to paste).
    Encrypt {
        /// age recipient (`age1…`), repeatable.
        #[arg(long = "recipient", short = 'r', required = true, value_name = "AGE1…")]
        recipients: Vec<String>,
    },
    /// Print the spec format's JSON Schema.
    Schema,
    /// Run as a controller: reconcile the specs every `--interval`, serve `/healthz`, `/readyz`,
    /// `/metrics` and `POST /reconcile` on `--listen`. Replicas on one database elect one leader.
    /// SIGTERM or Ctrl-C finishes the numbers in flight, releases the lease and exits 0.
    Serve {
        /// Spec files, or directories of them (re-read at every reconcile; one spec per owner).
        #[arg(required = true, value_name = "SPEC")]
        spec: Vec<PathBuf>,
        /// Time between reconciles (±10% jitter): `30s`, `5m`, `1h`.
        #[arg(long, default_value = "5m", value_parser = parse_interval, value_name = "DURATION")]
        interval: std::time::Duration,
        /// Address for HTTP (health, readiness, metrics, trigger). Listening beyond loopback
        /// (e.g. `0.0.0.0:9750` in a container) is your explicit choice.
        #[arg(long, default_value = vapictl::serve::DEFAULT_LISTEN, value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// Only report drift (logs, metrics); change nothing.
        #[arg(long)]
        drift_only: bool,
        /// How long the leader lease outlives the leader's last renewal, in seconds: a
        /// replica takes over at most this long (plus one interval) after the leader died.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECONDS")]
        lease_ttl: u64,
        /// Numbers changed at once (over all owners of a reconcile).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
    },
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    vapictl::serve::parse_interval(text)
}
