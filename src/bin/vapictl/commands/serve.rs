//! `vapictl serve`: resolve the settings, bind, run the controller until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use vapictl::secrets::SecretValue;
use vapictl::serve::{Controller, ServeSettings};

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::settings;

pub(crate) struct ServeArgs {
    pub(crate) specs: Vec<PathBuf>,
    pub(crate) interval: Duration,
    pub(crate) listen: SocketAddr,
    pub(crate) drift_only: bool,
    pub(crate) lease_ttl: Duration,
    pub(crate) parallelism: usize,
}

pub(crate) async fn run(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<Exit> {
    // Checked once before starting, so a missing key or identity fails fast (exit 1) rather than
    // every interval; both are read again at every reconcile.
    settings::identities(g)?;
    let vapi = settings::vapi_config(g)?;
    let token = std::env::var("VAPICTL_SERVE_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(SecretValue::new);
    let identity_args = g.identities.clone();
    let serve = ServeSettings {
        specs: args.specs,
        interval: args.interval,
        listen: args.listen,
        drift_only: args.drift_only,
        lease_ttl: args.lease_ttl,
        token,
        database_url: g.database_url.clone(),
        vapi,
        identities: Box::new(move || settings::identities_from(&identity_args)),
        parallelism: args.parallelism,
        twilio: settings::twilio(g)?,
    };
    let controller = Controller::bind(serve).await?;
    if let Some(addr) = controller.local_addr() {
        tracing::info!(
            interval_s = args.interval.as_secs(),
            drift_only = args.drift_only,
            "listening on http://{addr}"
        );
    }
    controller.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

/// Completes on SIGTERM or SIGINT (never, if signals cannot be watched). The handlers are
/// installed here, before the controller starts, so an early signal is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Some((int, term)),
            _ => None,
        };
        async move {
            let Some((mut int, mut term)) = streams else {
                return std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stopping: finishing the numbers in flight, then releasing the lease");
        }
    }
    #[cfg(not(unix))]
    async move {
        let _ = tokio::signal::ctrl_c().await;
    }
}
