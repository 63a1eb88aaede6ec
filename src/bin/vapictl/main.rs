//! The `vapictl` binary: parse arguments, set up logs, run one command, map the result to an
//! exit code. Everything else lives in the library.

mod cli;
mod commands;
mod logging;
mod settings;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// The process's exit status (Terraform's contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, or no changes.
    Ok,
    /// An error, or an apply that left work undone.
    Error,
    /// Changes present (`plan --detailed-exitcode`), or drift.
    Changes,
    /// Refused by a safety gate, or a stale saved plan.
    Refused,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(match e {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Changes => 2,
            Exit::Refused => 3,
        })
    }
}

/// An apply's verdict over its owners: 1 if any failed, else 3 if any was refused, else 0.
impl From<vapictl::run::Verdict> for Exit {
    fn from(v: vapictl::run::Verdict) -> Self {
        match v {
            vapictl::run::Verdict::Ok => Exit::Ok,
            vapictl::run::Verdict::Failed => Exit::Error,
            vapictl::run::Verdict::Refused => Exit::Refused,
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2: 2 means "changes present" in vapictl's contract.
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Error.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    logging::init(
        &cli.global,
        matches!(cli.command, cli::Command::Serve { .. }),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    let result = runtime.block_on(commands::run(cli));
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            if is_broken_pipe(&e) {
                return Exit::Ok.into();
            }
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", format_error(&e));
            Exit::Error.into()
        }
    }
}

/// `error: …` then the cause chain once, then the hint lines the messages carry.
fn format_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for (i, cause) in e.chain().enumerate() {
        let text = cause.to_string();
        if i == 0 {
            out.push_str("error: ");
            out.push_str(&text);
        } else if !out.contains(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
    }
    out.trim_end().to_string()
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
