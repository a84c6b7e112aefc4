//! [`CredentialStore`] on both databases: sealed secrets, tries at a credential (ASVS 2.2.1) and passwords (ASVS 2.5).

use super::*;
use async_trait::async_trait;

#[async_trait]
impl CredentialStore for SqlStore {
    async fn use_app_link_nonce(
        &self,
        practice: PracticeId,
        app: AppId,
        nonce_hash: &[u8; 32],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        query("DELETE FROM app_link_nonces_used WHERE practice_id = $1 AND expires_ms < $2")
            .bind(practice.as_uuid())
            .bind(now.timestamp_millis())
            .execute(&mut tx)
            .await?;
        let done = query(
            "INSERT INTO app_link_nonces_used (practice_id, app_id, nonce_hash, expires_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (practice_id, app_id, nonce_hash) DO NOTHING",
        )
        .bind(practice.as_uuid())
        .bind(app.as_uuid())
        .bind(nonce_hash.as_slice())
        .bind(expires.timestamp_millis())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn reseal_secrets(
        &self,
        reseal: &(dyn for<'s> Fn(&'s str) -> Result<Option<String>, String> + Sync),
    ) -> StoreResult<usize> {
        let mut tx = self.begin().await?;
        let mut done = 0;
        for (select, update) in [
            (
                "SELECT practice_id, id, totp_secret FROM staff WHERE totp_secret IS NOT NULL",
                "UPDATE staff SET totp_secret = $1 WHERE practice_id = $2 AND id = $3",
            ),
            (
                "SELECT practice_id, account_id AS id, totp_secret FROM patient_login WHERE totp_secret IS NOT NULL",
                "UPDATE patient_login SET totp_secret = $1 WHERE practice_id = $2 AND account_id = $3",
            ),
        ] {
            let rows = query(select).fetch_all(&mut tx).await?;
            let rows: Vec<(Uuid, Uuid, String)> = rows
                .iter()
                .map(|r| Ok((r.uuid("practice_id")?, r.uuid("id")?, r.text("totp_secret")?)))
                .collect::<StoreResult<_>>()?;
            for (practice, id, stored) in rows {
                let Some(sealed) = reseal(&stored).map_err(StoreError::refused)? else { continue };
                query(update).bind(sealed).bind(practice).bind(id).execute(&mut tx).await?;
                done += 1;
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn take_account_try(
        &self,
        practice: PracticeId,
        subject: &caldicott_core::credentials::Subject,
        now: DateTime<Utc>,
        every: chrono::Duration,
        burst: u32,
    ) -> StoreResult<bool> {
        // GCRA: the next try is due at `tat`; a try at `now` is taken while `tat` is no further
        // ahead than the burst allows, and moves `tat` on by one interval.
        let (now_ms, every_ms) = (now.timestamp_millis(), every.num_milliseconds().max(1));
        let tolerance_ms = every_ms * i64::from(burst.max(1) - 1);
        let mut tx = self.begin().await?;
        let taken = query(
            "INSERT INTO account_tries (practice_id, subject, tat_ms) VALUES ($1, $2, $3 + $4) \
             ON CONFLICT (practice_id, subject) DO UPDATE SET \
             tat_ms = CASE WHEN account_tries.tat_ms > $3 THEN account_tries.tat_ms ELSE $3 END + $4 \
             WHERE CASE WHEN account_tries.tat_ms > $3 THEN account_tries.tat_ms ELSE $3 END - $3 <= $5 \
             RETURNING tat_ms",
        )
        .bind(practice.as_uuid())
        .bind(subject.as_str())
        .bind(now_ms)
        .bind(every_ms)
        .bind(tolerance_ms)
        .fetch_optional(&mut tx)
        .await?
        .map(|r| r.int("tat_ms"))
        .transpose()?;
        let Some(tat) = taken else {
            tx.rollback().await?;
            return Ok(false);
        };
        if tat == now_ms + every_ms {
            // A full burst again (a new account, or one whose rate refilled): rows whose rate has
            // refilled are the same as no row, so they go (tries at made-up usernames leave rows).
            query("DELETE FROM account_tries WHERE practice_id = $1 AND tat_ms < $2")
                .bind(practice.as_uuid())
                .bind(now_ms)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_credential_try(
        &self,
        practice: PracticeId,
        subject: &caldicott_core::credentials::Subject,
        address: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<caldicott_core::credentials::Claim>> {
        let now_ms = now.timestamp_millis();
        let mut tx = self.begin().await?;
        // One statement claims the try: a row whose wait is still due is not updated and
        // returns nothing. A count untouched for a day starts again.
        let claimed = query(
            "INSERT INTO credential_tries (practice_id, subject, address, failures, wait_until_ms, last_try_ms) \
             VALUES ($1, $2, $3, 1, $4, $4) \
             ON CONFLICT (practice_id, subject, address) DO UPDATE SET \
             failures = CASE WHEN credential_tries.last_try_ms < $4 - 86400000 THEN 1 ELSE credential_tries.failures + 1 END, \
             last_try_ms = $4 \
             WHERE credential_tries.wait_until_ms <= $4 \
             RETURNING failures, succeeded_ms",
        )
        .bind(practice.as_uuid())
        .bind(subject.as_str())
        .bind(address)
        .bind(now_ms)
        .fetch_optional(&mut tx)
        .await?
        .map(|r| Ok::<_, StoreError>((r.int("failures")?, r.int("succeeded_ms")?)))
        .transpose()?;
        let Some((n, succeeded_ms)) = claimed else {
            tx.rollback().await?;
            return Ok(None);
        };
        if n == 1 {
            // A new count: forget rows nobody has tried or signed in from for 30 days
            // (tries at made-up usernames leave rows behind).
            let stale = now_ms - caldicott_core::credentials::KNOWN_ADDRESS_FOR.num_milliseconds();
            query("DELETE FROM credential_tries WHERE practice_id = $1 AND last_try_ms < $2 AND succeeded_ms < $2")
                .bind(practice.as_uuid())
                .bind(stale)
                .execute(&mut tx)
                .await?;
        }
        let wait = caldicott_core::credentials::wait_after(n).num_milliseconds();
        query(
            "UPDATE credential_tries SET wait_until_ms = $1 WHERE practice_id = $2 AND subject = $3 AND address = $4",
        )
        .bind(now_ms + wait)
        .bind(practice.as_uuid())
        .bind(subject.as_str())
        .bind(address)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        let known_after = now_ms - caldicott_core::credentials::KNOWN_ADDRESS_FOR.num_milliseconds();
        Ok(Some(caldicott_core::credentials::Claim { failures: n, known_address: succeeded_ms > known_after }))
    }

    async fn clear_credential_tries(
        &self,
        practice: PracticeId,
        subject: &caldicott_core::credentials::Subject,
        address: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE credential_tries SET failures = 0, wait_until_ms = 0, succeeded_ms = $1 \
             WHERE practice_id = $2 AND subject = $3 AND address = $4",
        )
        .bind(now.timestamp_millis())
        .bind(practice.as_uuid())
        .bind(subject.as_str())
        .bind(address);
        self.execute_alone(q).await.map(drop)
    }

    async fn use_totp_step(
        &self,
        practice: PracticeId,
        login: caldicott_core::credentials::TotpLogin,
        step: i64,
    ) -> StoreResult<bool> {
        use caldicott_core::credentials::TotpLogin;
        let (sql, id) = match login {
            TotpLogin::Staff(s) => (
                "UPDATE staff SET totp_last_step = $1 WHERE practice_id = $2 AND id = $3 \
                 AND (totp_last_step IS NULL OR totp_last_step < $1)",
                s.as_uuid(),
            ),
            TotpLogin::Patient(a) => (
                "UPDATE patient_login SET totp_last_step = $1 WHERE practice_id = $2 AND account_id = $3 \
                 AND (totp_last_step IS NULL OR totp_last_step < $1)",
                a.as_uuid(),
            ),
        };
        Ok(self.execute_alone(query(sql).bind(step).bind(practice.as_uuid()).bind(id)).await? == 1)
    }

    async fn set_staff_password(
        &self,
        practice: PracticeId,
        staff: StaffId,
        password_hash: &str,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::put_password(&mut tx, practice, Login::Staff(staff), password_hash, keep, at).await?;
        query("DELETE FROM staff_password_reset WHERE practice_id = $1 AND staff_id = $2")
            .bind(practice.as_uuid())
            .bind(staff.as_uuid())
            .execute(&mut tx)
            .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn start_password_reset(
        &self,
        practice: PracticeId,
        reset: &caldicott_core::staff::PasswordReset,
        placeholder_hash: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::put_password(&mut tx, practice, Login::Staff(reset.staff), placeholder_hash, None, reset.created_at)
            .await?;
        query(
            "INSERT INTO staff_password_reset (practice_id, staff_id, code_hash, made_by, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) \
             ON CONFLICT (practice_id, staff_id) DO UPDATE SET code_hash = $3, made_by = $4, created_at = $5, \
             expires_at = $6, used_at = NULL",
        )
        .bind(practice.as_uuid())
        .bind(reset.staff.as_uuid())
        .bind(reset.code_hash.to_vec())
        .bind(reset.made_by.as_uuid())
        .bind(reset.created_at)
        .bind(reset.expires_at)
        .execute(&mut tx)
        .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn password_reset(
        &self,
        practice: PracticeId,
        staff: StaffId,
    ) -> StoreResult<Option<caldicott_core::staff::PasswordReset>> {
        self.row_by(
            "SELECT * FROM staff_password_reset WHERE practice_id = $1 AND staff_id = $2",
            practice,
            staff.as_uuid(),
            rows::password_reset,
        )
        .await
    }

    async fn finish_password_reset(
        &self,
        practice: PracticeId,
        staff: StaffId,
        code_hash: &[u8; 32],
        password_hash: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // The code is taken in the statement that checks it is unused: used once, even
        // by two requests at the same moment.
        let used = query(
            "UPDATE staff_password_reset SET used_at = $1 \
             WHERE practice_id = $2 AND staff_id = $3 AND code_hash = $4 AND used_at IS NULL",
        )
        .bind(at)
        .bind(practice.as_uuid())
        .bind(staff.as_uuid())
        .bind(code_hash.to_vec())
        .execute(&mut tx)
        .await?;
        if used.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        Self::put_password(&mut tx, practice, Login::Staff(staff), password_hash, None, at).await?;
        Self::commit_audited(tx, practice, &[audit]).await?;
        Ok(true)
    }
}
