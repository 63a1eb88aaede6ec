//! vapictl: declarative Vapi phone numbers.

pub mod secrets;
pub mod state;
pub mod store;

#[cfg(feature = "standin")]
pub mod standin;
