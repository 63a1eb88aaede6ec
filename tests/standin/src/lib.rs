//! Stand-ins for the services vapictl talks to, for vapictl's tests, examples and quickstart;
//! never part of the `vapictl` binary.
//!
//! Each service has its own module (today [`vapi`]); what they share — serving connections that
//! can be dropped on purpose — lives beside them in `conn`. The `vapi-standin` binary runs the
//! Vapi stand-in on its own, for trying vapictl by hand.
//!
//! This crate does not depend on vapictl: it speaks the services' wire formats, so a stand-in
//! cannot agree with the client merely because both share the same types.

mod conn;
pub mod vapi;
