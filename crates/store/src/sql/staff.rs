//! [`StaffStore`] on both databases: staff, their API tokens, sign-in and sessions.

use super::*;
use async_trait::async_trait;

#[async_trait]
impl StaffStore for SqlStore {
    async fn create_staff(&self, practice: PracticeId, s: &StaffMember, audit: &AuditRecord) -> StoreResult<()> {
        if s.practice != practice {
            return Err(StoreError::refused("the staff member belongs to another practice"));
        }
        let q = query(
            "INSERT INTO staff (practice_id, id, username, display_name, role, password_hash, active, created_at, \
             sds_user_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(practice.as_uuid())
        .bind(s.id.as_uuid())
        .bind(&s.username)
        .bind(&s.display_name)
        .bind(s.role.as_str())
        .bind(&s.password_hash)
        .bind(s.active)
        .bind(Utc::now())
        .bind(&s.sds_user_id);
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn staff_member(&self, practice: PracticeId, id: StaffId) -> StoreResult<Option<StaffMember>> {
        self.row_by("SELECT * FROM staff WHERE practice_id = $1 AND id = $2", practice, id.as_uuid(), |r| {
            rows::staff(practice, r)
        })
        .await
    }

    async fn staff_by_username(&self, practice: PracticeId, username: &str) -> StoreResult<Option<StaffMember>> {
        self.row_by("SELECT * FROM staff WHERE practice_id = $1 AND username = $2", practice, username, |r| {
            rows::staff(practice, r)
        })
        .await
    }

    async fn staff_members(&self, practice: PracticeId) -> StoreResult<Vec<StaffMember>> {
        query("SELECT * FROM staff WHERE practice_id = $1 ORDER BY display_name")
            .bind(practice.as_uuid())
            .fetch_all(self.read())
            .await?
            .iter()
            .map(|r| rows::staff(practice, r))
            .collect()
    }

    async fn create_api_token(&self, practice: PracticeId, t: &ApiToken, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "INSERT INTO api_token (practice_id, id, staff_id, label, secret_hash, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(practice.as_uuid())
        .bind(t.id.as_uuid())
        .bind(t.staff.as_uuid())
        .bind(&t.label)
        .bind(t.secret_hash.to_vec())
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.revoked_at);
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn api_token(&self, practice: PracticeId, id: TokenId) -> StoreResult<Option<ApiToken>> {
        Ok(self.hot_token_and_staff(practice, id).await?.map(|(t, _)| t))
    }

    async fn api_tokens(&self, practice: PracticeId) -> StoreResult<Vec<(ApiToken, StaffMember)>> {
        query(
            "SELECT t.id AS token_id, t.staff_id, t.label, t.secret_hash, t.created_at AS token_created_at, \
             t.expires_at, t.revoked_at, s.* \
             FROM api_token t JOIN staff s ON s.practice_id = t.practice_id AND s.id = t.staff_id \
             WHERE t.practice_id = $1 ORDER BY t.created_at DESC LIMIT 1000",
        )
        .bind(practice.as_uuid())
        .fetch_all(self.read())
        .await?
        .iter()
        .map(|r| {
            let id = TokenId::from_uuid(r.uuid("token_id")?);
            Ok((rows::token(practice, id, r)?, rows::staff(practice, r)?))
        })
        .collect()
    }

    async fn staff_for_token(&self, practice: PracticeId, id: TokenId) -> StoreResult<Option<(ApiToken, StaffMember)>> {
        self.hot_token_and_staff(practice, id).await
    }

    async fn revoke_api_token(
        &self,
        practice: PracticeId,
        id: TokenId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query("UPDATE api_token SET revoked_at = $1 WHERE practice_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(at)
            .bind(practice.as_uuid())
            .bind(id.as_uuid());
        self.change_one_audited(practice, q, "active token", &[audit]).await
    }

    async fn set_staff_active(
        &self,
        practice: PracticeId,
        staff: StaffId,
        active: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query("UPDATE staff SET active = $1 WHERE practice_id = $2 AND id = $3")
            .bind(active)
            .bind(practice.as_uuid())
            .bind(staff.as_uuid());
        self.change_one_audited(practice, q, "staff member", &[audit]).await
    }

    async fn set_staff_sds_user_id(
        &self,
        practice: PracticeId,
        staff: StaffId,
        (read, sds_user_id): (Option<&str>, Option<&str>),
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let lock = format!("SELECT sds_user_id FROM staff WHERE practice_id = $1 AND id = $2{}", tx.row_lock());
        let held = query(&lock)
            .bind(practice.as_uuid())
            .bind(staff.as_uuid())
            .fetch_optional(&mut tx)
            .await?
            .ok_or(StoreError::NotFound("staff member"))?;
        // The audit says what the change replaced: only when that is still what is held.
        if held.opt_text("sds_user_id")?.as_deref() != read {
            return Err(StoreError::refused("that SDS user ID was changed at the same moment: look again"));
        }
        let q = query("UPDATE staff SET sds_user_id = $1 WHERE practice_id = $2 AND id = $3")
            .bind(sds_user_id)
            .bind(practice.as_uuid())
            .bind(staff.as_uuid());
        Self::change_one_in(&mut tx, q, StoreError::NotFound("staff member")).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn set_sign_in_state(
        &self,
        practice: PracticeId,
        staff: StaffId,
        st: &SignInState,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE staff SET totp_secret = $1, totp_confirmed = $2, failed_sign_ins = $3, locked_until = $4 \
             WHERE practice_id = $5 AND id = $6",
        )
        .bind(&st.totp_secret)
        .bind(st.totp_confirmed)
        .bind(i32::try_from(st.failed).unwrap_or(i32::MAX))
        .bind(st.locked_until)
        .bind(practice.as_uuid())
        .bind(staff.as_uuid());
        self.change_one_audited(practice, q, "staff member", &[audit]).await
    }

    async fn create_session(
        &self,
        practice: PracticeId,
        session: &StaffSession,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_session(&mut tx, practice, session).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn session(&self, practice: PracticeId, id: SessionId) -> StoreResult<Option<(StaffSession, StaffMember)>> {
        self.row_by(SESSION_AND_STAFF, practice, id.as_uuid(), |r| {
            Ok((rows::session(practice, r)?, rows::staff(practice, r)?))
        })
        .await
    }

    async fn touch_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> StoreResult<()> {
        self.touch_live_session(Sessions::Staff, practice, id, at).await
    }

    async fn replace_session(
        &self,
        practice: PracticeId,
        old: SessionId,
        new: &StaffSession,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let end_old = Self::end_live_session(Sessions::Staff, practice, old, new.created_at);
        Self::change_one_in(&mut tx, end_old, StoreError::NotFound("live session")).await?;
        Self::insert_session(&mut tx, practice, new).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn end_session(
        &self,
        practice: PracticeId,
        id: SessionId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        self.execute_audited(practice, Self::end_live_session(Sessions::Staff, practice, id, at), &[audit])
            .await
            .map(drop)
    }
}
