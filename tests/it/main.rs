//! vapictl's integration tests: one binary, one module per area, shared helpers in `common`.

mod common;

mod concurrency;

mod app_schema;
mod bad_input;
mod cli;
mod edges;
mod faults;
mod fleet;
mod gitops;
mod model;
mod property;
mod reconcile;
mod scale;
mod scope;
mod serve;
mod squads;
mod store;
mod twilio;
mod vapi_client;
