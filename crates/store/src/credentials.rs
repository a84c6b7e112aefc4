//! Sealed secrets, tries at a credential (ASVS 2.2.1) and passwords (ASVS 2.5).

use crate::*;
use async_trait::async_trait;

/// Sealed secrets, tries at a credential (ASVS 2.2.1) and passwords (ASVS 2.5).
#[async_trait]
pub trait CredentialStore: Send + Sync {
    // --- Secrets sealed with a key outside the database --------------------------------------------
    /// Passes every stored authenticator secret (staff and patients, every practice) through
    /// `reseal` and writes back what it returns (`None`: leave it), all in one transaction; a
    /// secret `reseal` cannot handle fails the whole and changes nothing. The number rewritten.
    async fn reseal_secrets(
        &self,
        reseal: &(dyn for<'s> Fn(&'s str) -> Result<Option<String>, String> + Sync),
    ) -> StoreResult<usize>;

    /// Uses an app-link nonce (by its hash) once: `false` when it was used before. Nonces past
    /// their expiry are forgotten at the same time.
    async fn use_app_link_nonce(
        &self,
        practice: PracticeId,
        app: AppId,
        nonce_hash: &[u8; 32],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    // --- Tries at a credential (ASVS 2.2.1) --------------------------------------------------------
    /// Claims one try at `subject`'s credential from `address` at `now`, counting it as a
    /// failure until [`Store::clear_credential_tries`]: in one statement, refused (`None`) while
    /// a wait from earlier failures is due, so parallel tries cannot share one count. `Some`:
    /// the tries since the last success, and whether a sign-in completed from this address; the
    /// wait before the next try is set in the same transaction
    /// ([`caldicott_core::credentials::wait_after`]).
    async fn claim_credential_try(
        &self,
        practice: PracticeId,
        subject: &caldicott_core::credentials::Subject,
        address: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<caldicott_core::credentials::Claim>>;
    /// Takes one try at `subject`'s credential against the account-wide rate, across every
    /// address and every server: `every` between tries on average, `burst` at once. `false`
    /// (and nothing counted) when the rate is spent. One statement, so parallel tries on any
    /// number of servers cannot share one slot.
    async fn take_account_try(
        &self,
        practice: PracticeId,
        subject: &caldicott_core::credentials::Subject,
        now: DateTime<Utc>,
        every: chrono::Duration,
        burst: u32,
    ) -> StoreResult<bool>;
    /// The sign-in completed: tries from this address count from nothing again, and the
    /// address is known to the account from `now`.
    async fn clear_credential_tries(
        &self,
        practice: PracticeId,
        subject: &caldicott_core::credentials::Subject,
        address: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Accepts an authenticator code's time step once: `false` when that step, or a later
    /// one, was accepted for this login before (RFC 6238 5.2).
    async fn use_totp_step(
        &self,
        practice: PracticeId,
        login: caldicott_core::credentials::TotpLogin,
        step: i64,
    ) -> StoreResult<bool>;

    // --- Passwords (ASVS 2.5) ----------------------------------------------------------------------
    /// A member of staff's new password (argon2id PHC): every session of theirs but `keep` ends
    /// at `at`, and any one-time reset code of theirs is dropped, in one transaction with `audit`.
    async fn set_staff_password(
        &self,
        practice: PracticeId,
        staff: StaffId,
        password_hash: &str,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// An administrator's one-time code for a member of staff: the member's password becomes
    /// `placeholder_hash` (a hash of a secret nobody holds, so the old password stops working),
    /// every session of theirs ends, and the code replaces any earlier one. Not found for a
    /// member of another practice.
    async fn start_password_reset(
        &self,
        practice: PracticeId,
        reset: &caldicott_core::staff::PasswordReset,
        placeholder_hash: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The member's one-time code, if one was made (used or not).
    async fn password_reset(
        &self,
        practice: PracticeId,
        staff: StaffId,
    ) -> StoreResult<Option<caldicott_core::staff::PasswordReset>>;
    /// Uses the one-time code with `code_hash` once and sets the new password, ending every
    /// session of the member: `false` (and nothing changed) when that code is not the member's
    /// unused one (used meanwhile, replaced, or another).
    async fn finish_password_reset(
        &self,
        practice: PracticeId,
        staff: StaffId,
        code_hash: &[u8; 32],
        password_hash: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;
}
