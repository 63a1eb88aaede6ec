//! One module per command: settings in, exit status out. Data goes to stdout, talk to stderr.

mod apply;
pub(crate) use apply::ApplyArgs;
mod encrypt;
mod history;
mod import;
mod plan;
mod serve;
mod validate;

use std::io::{self, Write};

use vapictl::store::{Store, StoreOptions};
use vapictl::vapi::VapiClient;

use crate::Exit;
use crate::cli::{Cli, Command, GlobalArgs};
use crate::settings;

pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let g = &cli.global;
    match &cli.command {
        Command::Validate { spec } => validate::run(g, spec),
        Command::Plan {
            spec,
            detailed_exitcode,
            format,
            out,
            comment_limit,
        } => {
            let opts = plan::PlanArgs {
                detailed: *detailed_exitcode,
                format: *format,
                save_to: out.as_deref(),
                comment_limit: *comment_limit,
            };
            plan::plan(g, spec, &opts).await
        }
        Command::Apply {
            spec,
            auto_approve,
            parallelism,
            allow_deletes,
            lock_timeout,
        } => {
            let opts = apply::ApplyArgs {
                auto_approve: *auto_approve,
                parallelism: usize::from(*parallelism),
                allow_deletes: *allow_deletes,
                lock_timeout: std::time::Duration::from_secs(*lock_timeout),
            };
            apply::run(g, spec, opts).await
        }
        Command::History {
            number,
            owner,
            spec,
            limit,
        } => {
            history::run(
                g,
                number.as_deref(),
                owner.as_deref(),
                spec.as_deref(),
                *limit,
            )
            .await
        }
        Command::Drift {
            spec,
            format,
            comment_limit,
        } => plan::drift(g, spec, *format, *comment_limit).await,
        Command::Encrypt { recipients } => encrypt::run(recipients),
        Command::Import {
            owner,
            all,
            out_dir,
            recipients,
            adopt,
        } => match (owner, out_dir) {
            (Some(owner), _) => import::run(g, owner, recipients, *adopt).await,
            (None, Some(dir)) if *all => import::run_all(g, dir, recipients, *adopt).await,
            _ => anyhow::bail!(
                "`import` needs `--owner UUID`, or `--all --out-dir DIR`\nhint: `vapictl import --all --out-dir vapi/` writes one spec per owner"
            ),
        },
        Command::Serve {
            spec,
            interval,
            listen,
            drift_only,
            lease_ttl,
            parallelism,
        } => {
            let args = serve::ServeArgs {
                specs: spec.clone(),
                interval: *interval,
                listen: *listen,
                drift_only: *drift_only,
                lease_ttl: std::time::Duration::from_secs(*lease_ttl),
                parallelism: usize::from(*parallelism),
            };
            serve::run(g, args).await
        }
        Command::Schema => {
            io::stdout().write_all(vapictl::spec::json_schema().as_bytes())?;
            Ok(Exit::Ok)
        }
    }
}

/// The database and Vapi, opened only after the spec is known to be valid.
pub(crate) async fn connect(g: &GlobalArgs) -> anyhow::Result<(Store, VapiClient)> {
    let vapi = VapiClient::new(settings::vapi_config(g)?)?;
    let store = Store::connect(&g.database_url, &StoreOptions::default()).await?;
    Ok((store, vapi))
}
