//! vapictl makes Vapi phone numbers declarative.
//!
//! A team keeps one YAML spec per owner. vapictl runs it through a pipeline:
//! [`spec`] loads the file (with the position of every field), [`secrets`] decrypts the age-encrypted
//! Twilio tokens, [`validate`] checks everything and yields the [`state::DesiredState`]; then
//! [`store`] reads the application's database ([`state::RecordedState`]) and [`vapi`] lists Vapi
//! completely ([`state::ObservedState`]); [`diff`] compares the three and yields a [`plan::Plan`],
//! which [`render`] draws and [`apply`] carries out — Vapi first, then the row, per number.
//! validate, diff, plan and render are pure; only observe and apply do IO. [`run`] does the same
//! for many owners at once (one spec each, one observation for all) and holds the apply protocol
//! — leases, saved-plan checks, deletion gate, apply, re-plan — for one spec and for many.

pub mod apply;
pub mod diff;
pub mod error;
pub mod import;
pub mod pipeline;
pub mod plan;
pub mod render;
pub mod run;
pub mod safety;
pub mod saved;
pub mod secrets;
pub mod spec;
pub mod state;
pub mod store;
pub mod validate;
pub mod vapi;

pub use error::Error;
