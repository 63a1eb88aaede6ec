//! What Twilio showed for a number after vapictl created or adopted it, kept in
//! `vapictl_twilio_urls` (migration 0006) so that `drift` can tell a number repointed in the
//! Twilio console (issue 13). The statements are in `sql.rs`, the operations (record, forget,
//! read an owner's) in `pool.rs` with the others, their contracts on [`Store`](super::Store).

/// One number's Twilio URLs as recorded after its create or adopt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTwilioUrls {
    /// E.164.
    pub phone_number: String,
    pub account_sid: String,
    pub voice_url: Option<String>,
    pub sms_url: Option<String>,
}
