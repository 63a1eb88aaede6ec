//! Tracing logs on stderr: `-v`/`-q`/`RUST_LOG` pick the level, `--log-format json` the shape.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// `serving`: the command is `serve`, whose default level is info.
pub fn init(g: &GlobalArgs, serving: bool) {
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            // The controller's one line per reconcile is its normal output.
            0 if serving => "info",
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    // Our own crate at the chosen level; dependencies one notch quieter unless RUST_LOG says so.
    let default =
        format!("{level},vapictl={level},hyper=warn,reqwest=warn,sqlx=warn,rustls=warn,h2=warn");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match g.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(crate::settings::color(
                g.color,
                std::io::stderr().is_terminal(),
            ))
            .try_init(),
    };
}
