//! `vapi-standin`: runs the local Vapi stand-in until SIGINT/SIGTERM, for the README quickstart
//! and manual experiments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use standin::vapi::{DEFAULT_API_KEY, FaultConfig, StandIn, StandInConfig};

/// A local stand-in for the Vapi API (phone numbers and assistants), on loopback only.
#[derive(Debug, Parser)]
#[command(name = "vapi-standin", version)]
struct Args {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// The API key clients must send as a Bearer token.
    #[arg(long, env = "VAPI_STANDIN_API_KEY", default_value = DEFAULT_API_KEY)]
    api_key: String,

    /// JSON file holding the stand-in's data: loaded on start, rewritten after every change.
    #[arg(long)]
    state: Option<PathBuf>,

    /// Make sure an assistant with this name exists (reused if the state already has one).
    #[arg(long = "seed-assistant", value_name = "NAME")]
    seed_assistants: Vec<String>,

    /// Once serving, write VAPI_BASE_URL, VAPI_API_KEY and ASSISTANT_<NAME> lines here.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,

    /// Fault injection, as JSON, e.g. '{"seed":1,"pServerError":0.2,"latencyMs":50}'.
    #[arg(long, value_name = "JSON")]
    faults: Option<String>,
}

/// `Front desk` → `FRONT_DESK`, so the name can be a shell variable.
fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes the file in one rename, so a script polling for it never reads half of it.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run(args: Args) -> Result<(), String> {
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {}: the stand-in only serves loopback addresses",
            args.listen
        ));
    }
    let faults = match &args.faults {
        Some(json) => serde_json::from_str::<FaultConfig>(json)
            .map_err(|e| format!("--faults is not a valid fault config: {e}"))?,
        None => FaultConfig::default(),
    };
    let config = StandInConfig {
        listen: args.listen,
        api_key: args.api_key.clone(),
        org_id: None,
        state_file: args.state.clone(),
        faults,
    };
    let vapi = StandIn::start(config)
        .await
        .map_err(|e| format!("cannot start the stand-in: {e}"))?;

    let mut ready = format!(
        "VAPI_BASE_URL={}\nVAPI_API_KEY={}\n",
        vapi.base_url(),
        vapi.api_key()
    );
    for name in &args.seed_assistants {
        let id = vapi.ensure_assistant(name);
        ready.push_str(&format!("ASSISTANT_{}={id}\n", env_name(name)));
    }
    vapi.save_state()
        .map_err(|e| format!("cannot write the state file: {e}"))?;

    // The ready file first: whoever waits for the stdout line may read the file right away.
    if let Some(path) = &args.ready_file {
        write_atomically(path, &ready)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!("VAPI_BASE_URL={}", vapi.base_url());

    wait_for_signal().await;
    drop(vapi);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vapi-standin: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::env_name;

    #[test]
    fn assistant_names_become_shell_names() {
        assert_eq!(env_name("Front desk"), "FRONT_DESK");
        assert_eq!(env_name("sales-2"), "SALES_2");
    }
}
