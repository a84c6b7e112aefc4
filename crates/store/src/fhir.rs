//! Storage for the FHIR API: access tokens (short-lived, kept only as SHA-256 hashes, each bound
//! to one practice and either an app link, for a patient, or a practice integration), the
//! integrations and their public keys, and the client assertions already used.

use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{AppId, AppLinkId, IntegrationId, PracticeId, ProxyLinkId};
use caldicott_core::online::AppLink;
use caldicott_core::tasks::Task;
use chrono::{DateTime, Utc};

/// An app's access token as the store holds it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirToken {
    pub hash: [u8; 32],
    pub link: AppLinkId,
    /// Issued for someone the link's holder acts for, under this proxy link; `None`: for the
    /// holder themselves.
    pub proxy_link: Option<ProxyLinkId>,
    /// Space-separated SMART scopes, as granted.
    pub scopes: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A practice integration (SMART Backend Services client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: IntegrationId,
    pub name: String,
    /// `int_` + the practice's id + its own: the token endpoint finds the practice from it.
    pub client_id: String,
    /// The public key (PEM, or a JWK Set) its client assertions are checked with.
    pub public_key: String,
    /// The `system/` scopes it may be given, space-separated.
    pub scopes: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// An integration's access token as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemToken {
    pub hash: [u8; 32],
    pub integration: IntegrationId,
    pub scopes: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A client assertion's id, kept until the assertion expires so that it is taken once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionUse {
    pub jti: String,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait FhirStore: Send + Sync + 'static {
    /// Keeps a new token with the audit event of its issue.
    async fn create_fhir_token(&self, practice: PracticeId, token: &FhirToken, audit: &AuditRecord) -> StoreResult<()>;
    async fn fhir_token(&self, practice: PracticeId, hash: &[u8; 32]) -> StoreResult<Option<FhirToken>>;

    async fn create_integration(&self, practice: PracticeId, i: &Integration, audit: &AuditRecord) -> StoreResult<()>;
    async fn integrations(&self, practice: PracticeId) -> StoreResult<Vec<Integration>>;
    async fn integration_by_client_id(&self, practice: PracticeId, client_id: &str)
        -> StoreResult<Option<Integration>>;
    async fn set_integration_active(
        &self,
        practice: PracticeId,
        id: IntegrationId,
        active: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Keeps a new system token, the assertion it was issued on and the audit event, in one
    /// transaction. An assertion id already used answers [`crate::StoreError::Conflict`] and
    /// keeps nothing.
    async fn create_system_token(
        &self,
        practice: PracticeId,
        token: &SystemToken,
        assertion: &AssertionUse,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// An app's token got by exchanging its user's NHS login ID token (RFC 8693), in one
    /// transaction: the client assertion `(app, id)` taken once; the app's live link to
    /// `new_link.0.patient` found, with the patient's row locked so that parallel first
    /// exchanges make one link, or else `new_link` made with its "online services linked" task
    /// and audit event; then `token` on that link (its `link` is set to it) with `audit`.
    /// Answers the link the token stands on and whether it was made now. An assertion id used
    /// before answers [`crate::StoreError::Conflict`] and keeps nothing.
    async fn exchange_fhir_token(
        &self,
        practice: PracticeId,
        assertion: (AppId, &AssertionUse),
        new_link: (&AppLink, &Task, &AuditRecord),
        token: &FhirToken,
        audit: &AuditRecord,
    ) -> StoreResult<(AppLinkId, bool)>;
    /// An integration's access token with the integration it stands on, in one read: what every
    /// request of a practice integration checks (the token current, the integration on).
    async fn system_caller(
        &self,
        practice: PracticeId,
        hash: &[u8; 32],
    ) -> StoreResult<Option<(SystemToken, Integration)>>;
}
