//! Patient logins and sessions, repeat requests, linked apps (R21, R23).

use crate::*;
use async_trait::async_trait;

/// Patient logins and sessions, repeat requests, linked apps (R21, R23).
#[async_trait]
pub trait PatientServiceStore: Send + Sync {
    // --- Patient services --------------------------------------------------------------------------
    /// Issues linkage credentials; any earlier unused ones for the same person stop working.
    async fn issue_linkage_key(&self, practice: PracticeId, key: &LinkageKey, audit: &AuditRecord) -> StoreResult<()>;
    async fn linkage_key(&self, practice: PracticeId, account_ref: &str) -> StoreResult<Option<LinkageKey>>;
    /// Creates a local login and its online account with linkage credentials, marking them used
    /// (a conflict if they were used meanwhile, or the username is taken).
    async fn create_patient_login(
        &self,
        practice: PracticeId,
        account: &OnlineAccount,
        login: &PatientLogin,
        linkage_ref: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn patient_login(
        &self,
        practice: PracticeId,
        username: &str,
    ) -> StoreResult<Option<(PatientLogin, OnlineAccount)>>;
    /// The local login of an account, if it has one.
    async fn patient_login_of(&self, practice: PracticeId, account: AccountId) -> StoreResult<Option<PatientLogin>>;
    /// Sets or clears the authenticator secret of a patient login.
    async fn set_patient_totp(
        &self,
        practice: PracticeId,
        account: AccountId,
        secret: Option<&str>,
        confirmed: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn create_patient_session(
        &self,
        practice: PracticeId,
        s: &PatientSession,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn patient_session(
        &self,
        practice: PracticeId,
        id: SessionId,
    ) -> StoreResult<Option<(PatientSession, OnlineAccount)>>;
    async fn touch_patient_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> StoreResult<()>;
    async fn end_patient_session(
        &self,
        practice: PracticeId,
        id: SessionId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A patient login's new password: every session of the account but `keep` ends at `at`.
    async fn set_patient_password(
        &self,
        practice: PracticeId,
        account: AccountId,
        password_hash: &str,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A new password with a password letter (a linkage key that `resets` this account): the
    /// letter is marked used (a conflict if it was used or replaced meanwhile), the password set
    /// and every session of the account ended, in one transaction.
    async fn reset_patient_password(
        &self,
        practice: PracticeId,
        linkage_ref: &str,
        account: AccountId,
        password_hash: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Saves a changed proxy link (status, scope, dates) of this patient.
    async fn update_proxy_link(&self, practice: PracticeId, link: &ProxyLink, audit: &AuditRecord) -> StoreResult<()>;
    /// When each proxy link of a patient was last used (from the audit log), by link id.
    async fn proxy_last_used(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(ProxyLinkId, DateTime<Utc>)>>;
    /// The online account an OpenID Connect subject signs in to, at this practice.
    async fn oidc_account(
        &self,
        practice: PracticeId,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<OnlineAccount>>;
    /// A new online account reached through an OpenID Connect provider.
    async fn create_oidc_account(
        &self,
        practice: PracticeId,
        account: &OnlineAccount,
        issuer: &str,
        subject: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// A new identity level for an account (the provider verified the person further).
    async fn set_account_identity(
        &self,
        practice: PracticeId,
        account: AccountId,
        identity: caldicott_core::access::IdentityLevel,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The proxy links through which a person acts for others.
    async fn proxy_links_for_proxy(&self, practice: PracticeId, proxy: PatientId) -> StoreResult<Vec<ProxyLink>>;

    // --- Linked apps (R21, R23) --------------------------------------------------------------------
    async fn create_app(&self, practice: PracticeId, app: &PatientApp, audit: &AuditRecord) -> StoreResult<()>;
    async fn apps(&self, practice: PracticeId) -> StoreResult<Vec<PatientApp>>;
    /// Turns a registered app off (its links and tokens are refused from the next request) or
    /// on again, with the audit event. An app not registered here is [`StoreError::NotFound`].
    async fn set_app_active(
        &self,
        practice: PracticeId,
        app: AppId,
        active: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Sets (or, with `None`, clears) the key an app's token-exchange assertions are checked
    /// with, and its client id at NHS login when one is given, with the audit event. An app not
    /// registered here is [`StoreError::NotFound`].
    async fn set_app_exchange_key(
        &self,
        practice: PracticeId,
        app: AppId,
        audience_and_key: (Option<&str>, Option<&str>),
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// An app by its client id, with its practice.
    async fn app_by_client_id(&self, client_id: &str) -> StoreResult<Option<(PracticeId, PatientApp)>>;
    /// A new link and its "online services linked" task, in one transaction.
    async fn create_app_link(
        &self,
        practice: PracticeId,
        link: &AppLink,
        task: &Task,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    async fn app_link(&self, practice: PracticeId, id: AppLinkId) -> StoreResult<Option<AppLink>>;
    /// A patient's app links (revoked ones too), newest first, each with its app.
    async fn app_links_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(AppLink, PatientApp)>>;
    /// Revokes a patient's live app links (one, or all); returns how many.
    async fn revoke_app_links(
        &self,
        practice: PracticeId,
        patient: PatientId,
        only: Option<AppLinkId>,
        why: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<u64>;

    /// The records transferred in for a patient, newest first.
    async fn record_imports(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<RecordImport>>;
    async fn entry(&self, practice: PracticeId, id: EntryId) -> StoreResult<Option<Entry>>;
    async fn entries(&self, practice: PracticeId, patient: PatientId, query: EntryQuery) -> StoreResult<Vec<Entry>>;
    async fn entry_count(&self, practice: PracticeId, patient: PatientId) -> StoreResult<i64>;
    /// Replaces one entry by the parts it was split into (R9), with the audit event, in one
    /// transaction. Fails, changing nothing, if the entry is not the patient's.
    async fn split_entry(
        &self,
        practice: PracticeId,
        original: EntryId,
        parts: &[Entry],
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Results and documents waiting to be filed, oldest first, with their patients.
    async fn filing_queue(&self, practice: PracticeId, limit: u32) -> StoreResult<Vec<(Entry, PatientListing)>>;
    /// Files one entry: its filed body and its online visibility, with the audit event, in one
    /// transaction. Fails (and changes nothing) if the entry is no longer waiting.
    async fn file_entry(&self, practice: PracticeId, entry: &Entry, audit: &AuditRecord) -> StoreResult<()>;
    /// Sets the online visibility of entries (R11), all or none, each with its audit event, in one
    /// transaction. Every entry must belong to the practice.
    async fn set_entries_visibility(
        &self,
        practice: PracticeId,
        changes: &[(EntryId, OnlineVisibility, AuditRecord)],
    ) -> StoreResult<()>;
}
