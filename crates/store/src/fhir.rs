//! Storage for the FHIR API's access tokens: short-lived, kept only as SHA-256 hashes, each bound
//! to one practice and one app link (a patient-bound token) with its granted scopes.

use crate::StoreResult;
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{AppLinkId, PracticeId};
use chrono::{DateTime, Utc};

/// An access token as the store holds it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirToken {
    pub hash: [u8; 32],
    pub link: AppLinkId,
    /// Space-separated SMART scopes, as granted.
    pub scopes: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait FhirStore: Send + Sync + 'static {
    /// Keeps a new token with the audit event of its issue.
    async fn create_fhir_token(&self, practice: PracticeId, token: &FhirToken, audit: &AuditRecord) -> StoreResult<()>;
    async fn fhir_token(&self, practice: PracticeId, hash: &[u8; 32]) -> StoreResult<Option<FhirToken>>;
}
