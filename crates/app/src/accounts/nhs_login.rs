//! Sign-in through an identity provider that behaves like NHS login: the port the OpenID
//! Connect client (`caldicott_adapters::nhs_login`) plugs into, and what caldicott does with the
//! person the provider has identified. The NHS number and date of birth the provider returns must
//! match a patient registered at a practice here; a mismatch is refused with a plain message and
//! audited. The account's identity level is the one the provider proved: record access needs P9;
//! P5 gets appointments and messages (R22).

use crate::patient_services::PatientPrincipal;
use crate::{new_id, App, AppError, AppResult};
use caldicott_core::access::{AccountKind, IdentityLevel, OnlineAccount};
use caldicott_core::audit::{Action, Actor, ActorKind, Outcome};
use caldicott_core::ids::AccountId;
use caldicott_core::NhsNumber;
use chrono::NaiveDate;
use std::sync::Arc;

/// Told to a person the provider identified who is not registered here (or not as the
/// provider says).
pub const NOT_MATCHED: &str =
    "We could not match your NHS login to a patient registered at a practice that uses these \
     services. Check you are registered, or contact your GP practice.";

/// The redirect to the provider, and the value of the short-lived cookie that ties the answer
/// to this browser (state, nonce and PKCE verifier).
#[derive(Debug, Clone)]
pub struct AuthStart {
    pub redirect: String,
    pub cookie: String,
}

/// A person the provider identified: (subject, identity level, NHS number, date of birth).
pub type Identified = (String, IdentityLevel, NhsNumber, NaiveDate);

/// An app's user the provider identified, and the nonce their ID token carries.
pub type IdentifiedForApp = (String, IdentityLevel, NhsNumber, NaiveDate, Option<String>);

/// The identity provider, as the use cases need it. Errors are `AppError`s in the person's words
/// (`BadRequest` to start again, `Unavailable` when the provider cannot be reached).
#[async_trait::async_trait]
pub trait IdentityProvider: Send + Sync + 'static {
    /// The provider's issuer: accounts are keyed by (issuer, subject).
    fn issuer(&self) -> &str;
    /// Where to send the browser, and the cookie that ties the answer to it.
    async fn start(&self) -> AppResult<AuthStart>;
    /// The provider's answer (code and state) checked against the cookie: who the person is.
    async fn finish(&self, cookie: &str, code: &str, state: &str) -> AppResult<Identified>;
    /// Who an app's user is, from the ID token the provider issued to the app (`audience`) and
    /// the access token that reads their details.
    async fn identify_for_app(&self, id_token: &str, access_token: &str, audience: &str)
        -> AppResult<IdentifiedForApp>;
    /// Who an app's user is from the ID token the provider issued to the app (`audience`)
    /// alone, its NHS number and birth date from the token's claims (token exchange, RFC 8693).
    async fn identify_exchanged(&self, id_token: &str, audience: &str) -> AppResult<Identified>;
}

impl App {
    pub fn nhs_login(&self) -> Option<&Arc<dyn IdentityProvider>> {
        self.nhs_login.as_ref()
    }

    /// Signs in a person the provider has identified: their account at the practice where they
    /// are registered (made on first use), at the identity level the provider proved.
    pub async fn nhs_login_sign_in(
        &self,
        issuer: &str,
        subject: &str,
        level: IdentityLevel,
        nhs: &NhsNumber,
        dob: NaiveDate,
    ) -> AppResult<String> {
        let today = self.today();
        let mut found = None;
        for practice in self.store.practices().await? {
            if let Some(p) = self.store.patient_by_nhs_number(practice.id, nhs).await? {
                if p.registration_on(today).is_some() && !p.is_deceased_on(today) {
                    found = Some((practice, p));
                    break;
                }
            }
        }
        let Some((practice, patient)) = found else { return Err(AppError::Forbidden(NOT_MATCHED.into())) };
        if patient.date_of_birth != dob {
            let audit = self.patient_audit(
                Actor { kind: ActorKind::Patient, id: subject.to_owned(), role: "patient".into() },
                Some(patient.id),
                Action::PatientSignInFailed,
                format!("patient/{}", patient.id),
                Outcome::Denied,
                "NHS login date of birth does not match the record",
            );
            self.audit.record(practice.id, audit).await?;
            return Err(AppError::Forbidden(
                "Your date of birth in NHS login does not match your GP record, so we cannot show your services. \
                 Contact your GP practice to check your details."
                    .into(),
            ));
        }
        let account = match self.store.oidc_account(practice.id, issuer, subject).await? {
            Some(a) if a.holder != patient.id => {
                return Err(AppError::Forbidden(
                    "This NHS login is linked to someone else here. Contact the practice.".into(),
                ))
            }
            Some(a) => {
                if a.identity != level {
                    let audit = self.account_audit(
                        a.id,
                        patient.id,
                        Action::OnlineAccountCreate,
                        Outcome::Success,
                        format!("identity level {} -> {}", a.identity.as_str(), level.as_str()),
                    );
                    self.store.set_account_identity(practice.id, a.id, level, &audit).await?;
                }
                OnlineAccount { identity: level, ..a }
            }
            None => {
                let account = OnlineAccount {
                    id: AccountId::from_uuid(new_id()),
                    holder: patient.id,
                    kind: AccountKind::NhsLogin,
                    identity: level,
                    created_at: self.now(),
                };
                let audit = self.account_audit(
                    account.id,
                    patient.id,
                    Action::OnlineAccountCreate,
                    Outcome::Success,
                    format!("NHS login account, identity {}", level.as_str()),
                );
                self.store.create_oidc_account(practice.id, &account, issuer, subject, &audit).await?;
                account
            }
        };
        let who = PatientPrincipal::of(practice.id, &account, &patient);
        self.start_patient_session(&practice, &who).await
    }
}
