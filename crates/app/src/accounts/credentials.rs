//! Machine credentials (a patient app's client id and secret, a pharmacy's, a practice
//! integration's client assertion) checked on their own, before a request's body is read, and
//! every refusal audited.
//!
//! A refusal is written to the audit chain of the practice the credential belongs to, when the
//! credential names one that exists (a known client id with the wrong secret, an integration's
//! assertion with a bad signature or audience): an event with outcome `denied`, no patient, the
//! client's address. A credential that names nothing known has no practice whose chain could
//! hold it (the chains are per practice, as for an unknown username at staff sign-in): it goes
//! to the server log as a warning, with the client's address, and never its secret.

use crate::apps::sha256;
use crate::{new_id, App, AppError, AppResult};
use caldicott_core::audit::{Action, Actor, ActorKind, AuditRecord, Outcome};
use caldicott_core::ids::*;
use caldicott_core::online::PatientApp;
use caldicott_store::inbound::Sender;

impl App {
    /// Records a refused machine credential: at `practice` (with who it claimed to be) when it
    /// can be known, otherwise in the server log.
    pub(crate) async fn credential_refused(
        &self,
        at: Option<(PracticeId, Actor)>,
        action: Action,
        entity: String,
        why: &str,
    ) -> AppResult<()> {
        match at {
            Some((practice, actor)) => {
                let rec = AuditRecord::new(
                    AuditEventId::from_uuid(new_id()),
                    self.now(),
                    actor,
                    None,
                    action,
                    entity,
                    Outcome::Denied,
                    why,
                );
                self.audit.record(practice, rec).await
            }
            None => {
                let claimed: String = entity.chars().take(100).collect();
                tracing::warn!(
                    action = action.as_str(),
                    claimed = %claimed,
                    client = ?crate::client::current(),
                    why,
                    "machine credential refused; it names no practice here"
                );
                Ok(())
            }
        }
    }

    /// A patient app's client credentials: the app, if they are right and it is active. A
    /// refusal is audited (at the app's practice when the client id is known).
    pub async fn app_credentials(&self, client_id: &str, client_secret: &str) -> AppResult<(PracticeId, PatientApp)> {
        let refused = || AppError::Unauthenticated("the app's credentials are not right".into());
        let client_id = client_id.trim();
        let Some((practice, app)) = self.store.app_by_client_id(client_id).await? else {
            self.credential_refused(None, Action::AppLink, format!("client/{client_id}"), "unknown client id").await?;
            return Err(refused());
        };
        let right = crate::constant_time_eq(&hex::encode(sha256(client_secret)), &hex::encode(app.client_secret_hash));
        if !app.active || !right {
            let actor = crate::apps::app_actor(&app);
            let why = if right { "the app is turned off" } else { "wrong client secret" };
            self.credential_refused(Some((practice, actor)), Action::AppLink, format!("app/{}", app.id), why).await?;
            return Err(refused());
        }
        Ok((practice, app))
    }

    /// A pharmacy's client credentials for the Update Record endpoint: the sender, if they are
    /// right and it is active. A refusal is audited (at its practice when the client id is known).
    pub async fn sender_credentials(&self, client_id: &str, client_secret: &str) -> AppResult<(PracticeId, Sender)> {
        let refused = || AppError::Unauthenticated("the sender's credentials are not right".into());
        let client_id = client_id.trim();
        let Some((practice, sender)) = self.store.sender_by_client_id(client_id).await? else {
            self.credential_refused(None, Action::InboundReceive, format!("client/{client_id}"), "unknown client id")
                .await?;
            return Err(refused());
        };
        let right = crate::constant_time_eq(&hex::encode(sha256(client_secret)), &hex::encode(&sender.secret_hash));
        if !sender.active || !right {
            let actor = Actor { kind: ActorKind::System, id: sender.ods_code.clone(), role: "update_record".into() };
            let why = if right { "the sender is turned off" } else { "wrong client secret" };
            self.credential_refused(
                Some((practice, actor)),
                Action::InboundReceive,
                format!("sender/{}", sender.id),
                why,
            )
            .await?;
            return Err(refused());
        }
        Ok((practice, sender))
    }
}
