//! Staff, their API tokens, sign-in and sessions.

use crate::*;
use async_trait::async_trait;

/// Staff, their API tokens, sign-in and sessions.
#[async_trait]
pub trait StaffStore: Send + Sync {
    // --- Staff and tokens --------------------------------------------------------------------------
    async fn create_staff(&self, practice: PracticeId, staff: &StaffMember, audit: &AuditRecord) -> StoreResult<()>;
    async fn staff_member(&self, practice: PracticeId, id: StaffId) -> StoreResult<Option<StaffMember>>;
    async fn staff_by_username(&self, practice: PracticeId, username: &str) -> StoreResult<Option<StaffMember>>;
    async fn staff_members(&self, practice: PracticeId) -> StoreResult<Vec<StaffMember>>;
    async fn create_api_token(&self, practice: PracticeId, token: &ApiToken, audit: &AuditRecord) -> StoreResult<()>;
    async fn api_token(&self, practice: PracticeId, id: TokenId) -> StoreResult<Option<ApiToken>>;
    /// Every API token of the practice with the member of staff it was issued to, newest first.
    async fn api_tokens(&self, practice: PracticeId) -> StoreResult<Vec<(ApiToken, StaffMember)>>;
    /// A token together with the member of staff it was issued to (one round trip per request).
    async fn staff_for_token(&self, practice: PracticeId, id: TokenId) -> StoreResult<Option<(ApiToken, StaffMember)>>;
    async fn revoke_api_token(
        &self,
        practice: PracticeId,
        id: TokenId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    /// Activates or deactivates an account; a deactivated member's sessions and tokens stop
    /// working at once (they are checked on every request).
    async fn set_staff_active(
        &self,
        practice: PracticeId,
        staff: StaffId,
        active: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    /// Records (or, with `None`, clears) a member of staff's SDS user id, when what is held is
    /// still `read` (else refused, writing nothing: the audit names the value replaced); another
    /// member of the practice holding it already is `Conflict::SdsUserIdTaken`.
    async fn set_staff_sds_user_id(
        &self,
        practice: PracticeId,
        staff: StaffId,
        read_and_new: (Option<&str>, Option<&str>),
        audit: &AuditRecord,
    ) -> StoreResult<()>;

    // --- Staff sign-in and sessions ----------------------------------------------------------------
    /// Records a member of staff's TOTP secret, failure count and lock, with its audit event.
    async fn set_sign_in_state(
        &self,
        practice: PracticeId,
        staff: StaffId,
        state: &SignInState,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn create_session(
        &self,
        practice: PracticeId,
        session: &StaffSession,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A session and the member of staff it belongs to.
    async fn session(&self, practice: PracticeId, id: SessionId) -> StoreResult<Option<(StaffSession, StaffMember)>>;
    /// Notes that a session was used.
    async fn touch_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> StoreResult<()>;
    /// Ends `old` and starts `new` in one transaction (the session id changes at sign-in).
    async fn replace_session(
        &self,
        practice: PracticeId,
        old: SessionId,
        new: &StaffSession,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn end_session(
        &self,
        practice: PracticeId,
        id: SessionId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
}
