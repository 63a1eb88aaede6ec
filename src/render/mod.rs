//! Turning plans and reports into text for people and machines. Writers only: nothing here
//! prints, reads the clock, or touches the network.

mod json;
mod markdown;
mod run;
mod text;

pub use json::{FORMAT_VERSION, fingerprint, render_plan_json};
pub use markdown::{GITHUB_COMMENT_LIMIT, STICKY_MARKER, render_plan_markdown};
pub use run::{
    ApplyEntry, RunEntry, RunKind, RunSummary, RunView, render_run_apply_report, render_run_json,
    render_run_markdown, render_run_text,
};
pub use text::{Style, render_apply_report, render_drift_text, render_plan_text};

#[cfg(test)]
#[path = "snapshots_test.rs"]
mod snapshots_test;
