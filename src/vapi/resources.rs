//! The phone-number calls the applier makes: create, update and delete.

use reqwest::Method;

use super::VapiError;
use super::client::VapiClient;
use super::transport::decode;
use super::wire::{CreatePhoneNumber, PhoneNumberDto, UpdatePhoneNumber};
use crate::plan::{VapiCreate, VapiPatch};
use crate::secrets::SecretValue;
use crate::state::{ObservedNumber, mask_number};

impl VapiClient {
    /// POST /phone-number — sent once, never retried blindly.
    ///
    /// # Errors
    /// [`VapiError::OutcomeUnknown`] when the request may or may not have been carried out
    /// (timeout, dropped connection, 5xx): the caller must look the number up before trying again.
    /// A 429 means it was not carried out and is retried after `Retry-After`.
    pub async fn create_phone_number(
        &self,
        c: &VapiCreate,
        token: &SecretValue,
    ) -> Result<ObservedNumber, VapiError> {
        let label = format!("POST /phone-number ({})", mask_number(&c.number));
        let body = CreatePhoneNumber::new(c, token);
        let secrets: Vec<&SecretValue> = std::iter::once(token)
            .chain(c.server.iter().flat_map(|s| s.secrets()))
            .collect();
        let a = self
            .transport
            .call(
                Method::POST,
                "/phone-number",
                &[],
                Some(&body),
                &label,
                &secrets,
            )
            .await?;
        Ok(decode::<PhoneNumberDto>(&label, &a.body)?.into())
    }

    /// PATCH /phone-number/{id} with only the changed fields; checks that Vapi applied them.
    pub async fn update_phone_number(
        &self,
        id: &str,
        number: &str,
        patch: &VapiPatch,
        token: Option<&SecretValue>,
    ) -> Result<ObservedNumber, VapiError> {
        let label = format!("PATCH /phone-number/{id} ({})", mask_number(number));
        let body = UpdatePhoneNumber::new(patch, token);
        let secrets: Vec<&SecretValue> = token
            .into_iter()
            .chain(patch.server.iter().flatten().flat_map(|s| s.secrets()))
            .collect();
        let a = self
            .transport
            .call(
                Method::PATCH,
                &format!("/phone-number/{id}"),
                &[],
                Some(&body),
                &label,
                &secrets,
            )
            .await?;
        let got: ObservedNumber = decode::<PhoneNumberDto>(&label, &a.body)?.into();
        verify_patch(&label, patch, &got)?;
        Ok(got)
    }

    /// DELETE /phone-number/{id}. A number that is already gone counts as deleted.
    pub async fn delete_phone_number(&self, id: &str, number: &str) -> Result<(), VapiError> {
        let label = format!("DELETE /phone-number/{id} ({})", mask_number(number));
        match self
            .transport
            .call(
                Method::DELETE,
                &format!("/phone-number/{id}"),
                &[],
                None::<&()>,
                &label,
                &[],
            )
            .await
        {
            Ok(_) | Err(VapiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Vapi's answer must show what was sent; clearing with `null` is unconfirmed in the contract.
fn verify_patch(label: &str, p: &VapiPatch, got: &ObservedNumber) -> Result<(), VapiError> {
    let fail = |field: &str, got: String| {
        Err(VapiError::NotApplied {
            request: label.to_string(),
            field: field.to_string(),
            got,
        })
    };
    if let Some(a) = &p.assistant_id
        && got.assistant_id != *a
    {
        return fail("assistantId", format!("{:?}", got.assistant_id));
    }
    if let Some(sq) = &p.squad_id
        && got.squad_id != *sq
    {
        return fail("squadId", format!("{:?}", got.squad_id));
    }
    if let Some(n) = &p.name
        && got.name.as_deref() != Some(n.as_str())
    {
        return fail("name", format!("{:?}", got.name));
    }
    if let Some(None) = &p.server
        && got.server.is_some()
    {
        return fail("server", "a server".into());
    }
    Ok(())
}
