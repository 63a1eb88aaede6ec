//! Resolving what the user typed into settings: environment variables, defaults, identities.

use std::io::IsTerminal;
use std::time::Duration;

use vapictl::Error;
use vapictl::secrets::{Identities, SecretValue};
use vapictl::vapi::VapiConfig;

use vapictl::twilio::{Preflight, TwilioClient, TwilioConfig};

use crate::cli::{ColorChoice, GlobalArgs, TwilioCheck};

/// Identities from `--identity`, `VAPICTL_AGE_IDENTITY_FILE` and `VAPICTL_AGE_IDENTITY`.
pub fn identities(g: &GlobalArgs) -> Result<Identities, Error> {
    identities_from(&g.identities)
}

/// Identities from these `--identity` files and the environment.
pub fn identities_from(files: &[std::path::PathBuf]) -> Result<Identities, Error> {
    let mut ids = Identities::none();
    for path in files {
        ids.add_file(path)?;
    }
    if let Some(path) = std::env::var_os("VAPICTL_AGE_IDENTITY_FILE").filter(|p| !p.is_empty()) {
        ids.add_file(std::path::Path::new(&path))?;
    }
    if let Ok(text) = std::env::var("VAPICTL_AGE_IDENTITY")
        && !text.trim().is_empty()
    {
        ids.add_text("VAPICTL_AGE_IDENTITY", &SecretValue::new(text))?;
    }
    Ok(ids)
}

/// The Vapi API key from `VAPI_API_KEY`, else `VAPI_TOKEN`.
pub fn vapi_config(g: &GlobalArgs) -> Result<VapiConfig, Error> {
    let key = ["VAPI_API_KEY", "VAPI_TOKEN"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .ok_or_else(|| {
            Error::config(
                "no Vapi API key: `VAPI_API_KEY` is not set",
                "export VAPI_API_KEY=<private key from the Vapi dashboard> (or VAPI_TOKEN)",
            )
        })?;
    let mut cfg = VapiConfig::new(g.vapi_url.clone(), SecretValue::new(key.trim()));
    cfg.timeout = Duration::from_secs(g.vapi_timeout.max(1));
    cfg.max_rps = g.max_rps;
    Ok(cfg)
}

/// The Twilio preflight: off with `--twilio-check off` (Twilio is never contacted), else a
/// read-only client of `--twilio-url`, sharing the Vapi timeout.
pub fn twilio(g: &GlobalArgs) -> Result<Preflight, Error> {
    let client = match g.twilio_check {
        TwilioCheck::Off => None,
        TwilioCheck::On => {
            let mut cfg = TwilioConfig::new(g.twilio_url.clone());
            cfg.timeout = Duration::from_secs(g.vapi_timeout.max(1));
            Some(TwilioClient::new(cfg)?)
        }
    };
    Ok(Preflight::new(client, &g.vapi_url))
}

/// Colour for a stream: `--color`, then `NO_COLOR`, then whether it is a terminal.
pub fn color(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

pub fn stdout_color(g: &GlobalArgs) -> bool {
    color(g.color, std::io::stdout().is_terminal())
}

/// Everything `apply` needs, resolved once from its arguments and the environment (the CI run
/// and commit recorded in the audit trail).
pub fn apply_settings(
    args: &crate::commands::ApplyArgs,
    auto_approve: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> vapictl::run::ApplySettings {
    vapictl::run::ApplySettings {
        parallelism: args.parallelism,
        allow_deletes: args.allow_deletes,
        lock_timeout: args.lock_timeout,
        auto_approve,
        stop,
        run_id: uuid::Uuid::new_v4().to_string(),
        ci_run_id: std::env::var("GITHUB_RUN_ID")
            .or_else(|_| std::env::var("CI_PIPELINE_ID"))
            .ok(),
        commit_sha: std::env::var("GITHUB_SHA")
            .or_else(|_| std::env::var("CI_COMMIT_SHA"))
            .ok(),
        threshold: vapictl::safety::DeleteThreshold::default(),
    }
}
