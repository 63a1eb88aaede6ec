//! The top-level error: one variant per stage, each wrapping that stage's own error type.

use crate::diff::Refusals;
use crate::secrets::SecretsError;
use crate::spec::SpecError;
use crate::store::StoreError;
use crate::twilio::TwilioError;
use crate::validate::Problems;
use crate::vapi::VapiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Invalid(#[from] Problems),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vapi(#[from] VapiError),
    #[error("{0}")]
    Refused(#[from] Refusals),
    /// Twilio could not be read for the preflight or drift (issue 13).
    #[error("{0}\nhint: {hint}", hint = .0.hint())]
    Twilio(#[from] TwilioError),
    /// Writing the output or reading an answer failed (a closed pipe, say).
    #[error("cannot write the output or read the answer")]
    Output(#[source] std::io::Error),
    /// A setting is missing or wrong (flag, environment variable).
    #[error("{message}\nhint: {hint}")]
    Config { message: String, hint: String },
}

impl Error {
    pub fn config(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            hint: hint.into(),
        }
    }
}
