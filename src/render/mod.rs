//! Turning plans and reports into text for people and machines. Writers only: nothing here
//! prints, reads the clock, or touches the network.

mod text;

pub use text::{Style, render_apply_report, render_plan_text};
