//! [`PatientServiceStore`] on both databases: patient logins and sessions, repeat requests, linked apps (R21, R23).

use super::*;
use async_trait::async_trait;

#[async_trait]
impl PatientServiceStore for SqlStore {
    async fn record_imports(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<RecordImport>> {
        self.rows_by(
            "SELECT * FROM record_import WHERE practice_id = $1 AND patient_id = $2 ORDER BY imported_at DESC",
            practice,
            patient.as_uuid(),
            rows::record_import,
        )
        .await
    }

    async fn issue_linkage_key(&self, practice: PracticeId, k: &LinkageKey, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Every app linked with an earlier key loses its access at once (R21).
        query(
            "UPDATE app_link SET revoked_at = $1, revoked_why = 'linkage key regenerated' \
             WHERE practice_id = $2 AND patient_id = $3 AND revoked_at IS NULL AND linkage_ref IN \
             (SELECT account_ref FROM linkage_key WHERE practice_id = $2 AND holder_id = $3 AND revoked_at IS NULL)",
        )
        .bind(k.issued_at)
        .bind(practice.as_uuid())
        .bind(k.holder.as_uuid())
        .execute(&mut tx)
        .await?;
        query(
            "UPDATE linkage_key SET revoked_at = $1 WHERE practice_id = $2 AND holder_id = $3 AND revoked_at IS NULL",
        )
        .bind(k.issued_at)
        .bind(practice.as_uuid())
        .bind(k.holder.as_uuid())
        .execute(&mut tx)
        .await?;
        query(
            "INSERT INTO linkage_key (practice_id, account_ref, holder_id, key_hash, identity_level, issued_at, issued_by, resets_account_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(practice.as_uuid())
        .bind(&k.account_ref)
        .bind(k.holder.as_uuid())
        .bind(k.key_hash.to_vec())
        .bind(k.identity.as_str())
        .bind(k.issued_at)
        .bind(&k.issued_by)
        .bind(k.resets.map(|a| a.as_uuid()))
        .execute(&mut tx)
        .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn linkage_key(&self, practice: PracticeId, account_ref: &str) -> StoreResult<Option<LinkageKey>> {
        self.row_by(
            "SELECT * FROM linkage_key WHERE practice_id = $1 AND account_ref = $2",
            practice,
            account_ref,
            rows::linkage_key,
        )
        .await
    }

    async fn create_patient_login(
        &self,
        practice: PracticeId,
        account: &OnlineAccount,
        login: &PatientLogin,
        linkage_ref: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let q = query(
            "UPDATE linkage_key SET used_at = $1 WHERE practice_id = $2 AND account_ref = $3 AND holder_id = $4 \
             AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(account.created_at)
        .bind(practice.as_uuid())
        .bind(linkage_ref)
        .bind(account.holder.as_uuid());
        Self::change_one_in(&mut tx, q, StoreError::refused("these linkage details have already been used")).await?;
        Self::insert_account(&mut tx, practice, account).await?;
        query(
            "INSERT INTO patient_login (practice_id, account_id, username, password_hash, failed_sign_ins, locked_until) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(practice.as_uuid())
        .bind(account.id.as_uuid())
        .bind(&login.username)
        .bind(&login.password_hash)
        .bind(0i32)
        .bind(Option::<DateTime<Utc>>::None)
        .execute(&mut tx)
        .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn patient_login(
        &self,
        practice: PracticeId,
        username: &str,
    ) -> StoreResult<Option<(PatientLogin, OnlineAccount)>> {
        self.row_by(
            "SELECT l.*, a.id AS a_id, a.holder_id, a.kind, a.identity_level, a.created_at AS a_created_at FROM patient_login l \
             JOIN online_account a ON a.practice_id = l.practice_id AND a.id = l.account_id \
             WHERE l.practice_id = $1 AND l.username = $2",
            practice,
            username,
            |r| Ok((rows::patient_login(r)?, rows::online_account(r, "a_id")?)),
        )
        .await
    }

    async fn patient_login_of(&self, practice: PracticeId, account: AccountId) -> StoreResult<Option<PatientLogin>> {
        self.row_by(
            "SELECT * FROM patient_login WHERE practice_id = $1 AND account_id = $2",
            practice,
            account.as_uuid(),
            rows::patient_login,
        )
        .await
    }

    async fn set_patient_totp(
        &self,
        practice: PracticeId,
        account: AccountId,
        secret: Option<&str>,
        confirmed: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE patient_login SET totp_secret = $1, totp_confirmed = $2 WHERE practice_id = $3 AND account_id = $4",
        )
        .bind(secret)
        .bind(confirmed)
        .bind(practice.as_uuid())
        .bind(account.as_uuid());
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn create_patient_session(
        &self,
        practice: PracticeId,
        s: &PatientSession,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "INSERT INTO patient_session (practice_id, id, account_id, secret_hash, csrf_token, created_at, last_seen_at, expires_at, stage) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(practice.as_uuid())
        .bind(s.id.as_uuid())
        .bind(s.account.as_uuid())
        .bind(s.secret_hash.to_vec())
        .bind(&s.csrf_token)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(s.stage.as_str());
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn patient_session(
        &self,
        practice: PracticeId,
        id: SessionId,
    ) -> StoreResult<Option<(PatientSession, OnlineAccount)>> {
        self.row_by(
            "SELECT s.*, a.id AS a_id, a.holder_id, a.kind, a.identity_level, a.created_at AS a_created_at \
             FROM patient_session s JOIN online_account a ON a.practice_id = s.practice_id AND a.id = s.account_id \
             WHERE s.practice_id = $1 AND s.id = $2",
            practice,
            id.as_uuid(),
            |r| Ok((rows::patient_session(r)?, rows::online_account(r, "a_id")?)),
        )
        .await
    }

    async fn touch_patient_session(&self, practice: PracticeId, id: SessionId, at: DateTime<Utc>) -> StoreResult<()> {
        self.touch_live_session(Sessions::Patient, practice, id, at).await
    }

    async fn end_patient_session(
        &self,
        practice: PracticeId,
        id: SessionId,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = Self::end_live_session(Sessions::Patient, practice, id, at);
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn set_patient_password(
        &self,
        practice: PracticeId,
        account: AccountId,
        password_hash: &str,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::put_password(&mut tx, practice, Login::Patient(account), password_hash, keep, at).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn reset_patient_password(
        &self,
        practice: PracticeId,
        linkage_ref: &str,
        account: AccountId,
        password_hash: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let q = query(
            "UPDATE linkage_key SET used_at = $1 WHERE practice_id = $2 AND account_ref = $3 \
             AND resets_account_id = $4 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(practice.as_uuid())
        .bind(linkage_ref)
        .bind(account.as_uuid());
        Self::change_one_in(&mut tx, q, StoreError::refused("this letter has already been used")).await?;
        Self::put_password(&mut tx, practice, Login::Patient(account), password_hash, None, at).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn oidc_account(
        &self,
        practice: PracticeId,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<OnlineAccount>> {
        query(
            "SELECT a.id AS a_id, a.holder_id, a.kind, a.identity_level, a.created_at AS a_created_at FROM oidc_subject o \
             JOIN online_account a ON a.practice_id = o.practice_id AND a.id = o.account_id \
             WHERE o.practice_id = $1 AND o.issuer = $2 AND o.subject = $3",
        )
        .bind(practice.as_uuid())
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.read())
        .await?
        .map(|r| rows::online_account(&r, "a_id"))
        .transpose()
    }

    async fn create_oidc_account(
        &self,
        practice: PracticeId,
        account: &OnlineAccount,
        issuer: &str,
        subject: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_account(&mut tx, practice, account).await?;
        query("INSERT INTO oidc_subject (practice_id, issuer, subject, account_id, linked_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(practice.as_uuid())
            .bind(issuer)
            .bind(subject)
            .bind(account.id.as_uuid())
            .bind(account.created_at)
            .execute(&mut tx)
            .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn set_account_identity(
        &self,
        practice: PracticeId,
        account: AccountId,
        identity: IdentityLevel,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query("UPDATE online_account SET identity_level = $1 WHERE practice_id = $2 AND id = $3")
            .bind(identity.as_str())
            .bind(practice.as_uuid())
            .bind(account.as_uuid());
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn update_proxy_link(&self, practice: PracticeId, l: &ProxyLink, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let q =
            query("DELETE FROM proxy_link WHERE practice_id = $1 AND id = $2 AND patient_id = $3 AND proxy_id = $4")
                .bind(practice.as_uuid())
                .bind(l.id.as_uuid())
                .bind(l.patient.as_uuid())
                .bind(l.proxy.as_uuid());
        Self::change_one_in(&mut tx, q, StoreError::NotFound("proxy link")).await?;
        Self::insert_proxy(&mut tx, practice, l).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn proxy_last_used(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(ProxyLinkId, DateTime<Utc>)>> {
        query(
            "SELECT actor_role, MAX(at) AS last FROM audit_event WHERE practice_id = $1 AND patient_id = $2 \
             AND actor_kind = 'proxy' GROUP BY actor_role",
        )
        .bind(practice.as_uuid())
        .bind(patient.to_string())
        .fetch_all(self.read())
        .await?
        .iter()
        .filter_map(|r| {
            let role = r.opt_text("actor_role").ok()??;
            let id = role.strip_prefix("proxy/")?.parse::<ProxyLinkId>().ok()?;
            Some(r.opt_time("last").map(|t| t.map(|t| (id, t))))
        })
        .filter_map(|r| r.transpose())
        .collect()
    }

    async fn proxy_links_for_proxy(&self, practice: PracticeId, proxy: PatientId) -> StoreResult<Vec<ProxyLink>> {
        let sql = format!(
            "SELECT {PROXY_COLUMNS} FROM proxy_link WHERE practice_id = $1 AND proxy_id = $2 ORDER BY granted_on"
        );
        self.rows_by(&sql, practice, proxy.as_uuid(), rows::proxy).await
    }

    async fn create_app(&self, practice: PracticeId, a: &PatientApp, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "INSERT INTO patient_app (practice_id, id, name, supplier, client_id, client_secret_hash, active, created_at, \
             nhs_login_client_id, exchange_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(practice.as_uuid())
        .bind(a.id.as_uuid())
        .bind(&a.name)
        .bind(&a.supplier)
        .bind(&a.client_id)
        .bind(a.client_secret_hash.to_vec())
        .bind(a.active)
        .bind(a.created_at)
        .bind(&a.nhs_login_client_id)
        .bind(&a.exchange_key);
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn apps(&self, practice: PracticeId) -> StoreResult<Vec<PatientApp>> {
        query("SELECT * FROM patient_app WHERE practice_id = $1 ORDER BY name")
            .bind(practice.as_uuid())
            .fetch_all(self.read())
            .await?
            .iter()
            .map(|r| rows::patient_app(r, "id"))
            .collect()
    }

    async fn set_app_active(
        &self,
        practice: PracticeId,
        app: AppId,
        active: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query("UPDATE patient_app SET active = $3 WHERE practice_id = $1 AND id = $2")
            .bind(practice.as_uuid())
            .bind(app.as_uuid())
            .bind(active);
        self.change_one_audited(practice, q, "app", &[audit]).await
    }

    async fn set_app_exchange_key(
        &self,
        practice: PracticeId,
        app: AppId,
        (audience, key): (Option<&str>, Option<&str>),
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE patient_app SET exchange_key = $3, nhs_login_client_id = COALESCE($4, nhs_login_client_id) \
             WHERE practice_id = $1 AND id = $2",
        )
        .bind(practice.as_uuid())
        .bind(app.as_uuid())
        .bind(key)
        .bind(audience);
        self.change_one_audited(practice, q, "app", &[audit]).await
    }

    async fn app_by_client_id(&self, client_id: &str) -> StoreResult<Option<(PracticeId, PatientApp)>> {
        query("SELECT * FROM patient_app WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(self.read())
            .await?
            .map(|r| Ok((PracticeId::from_uuid(r.uuid("practice_id")?), rows::patient_app(&r, "id")?)))
            .transpose()
    }

    async fn create_app_link(
        &self,
        practice: PracticeId,
        l: &AppLink,
        t: &Task,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_app_link(&mut tx, practice, l, t).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn app_link(&self, practice: PracticeId, id: AppLinkId) -> StoreResult<Option<AppLink>> {
        self.row_by("SELECT * FROM app_link WHERE practice_id = $1 AND id = $2", practice, id.as_uuid(), rows::app_link)
            .await
    }

    async fn app_links_for_patient(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Vec<(AppLink, PatientApp)>> {
        query(
            "SELECT l.*, a.id AS a_id, a.name, a.supplier, a.client_id, a.client_secret_hash, a.nhs_login_client_id, a.exchange_key, a.active, a.created_at \
             FROM app_link l JOIN patient_app a ON a.practice_id = l.practice_id AND a.id = l.app_id \
             WHERE l.practice_id = $1 AND l.patient_id = $2 ORDER BY l.linked_at DESC",
        )
        .bind(practice.as_uuid())
        .bind(patient.as_uuid())
        .fetch_all(self.read())
        .await?
        .iter()
        .map(|r| Ok((rows::app_link(r)?, rows::patient_app(r, "a_id")?)))
        .collect()
    }

    async fn revoke_app_links(
        &self,
        practice: PracticeId,
        patient: PatientId,
        only: Option<AppLinkId>,
        why: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done =
            match only {
                Some(id) => query(
                    "UPDATE app_link SET revoked_at = $1, revoked_why = $2 WHERE practice_id = $3 AND patient_id = $4 \
                 AND revoked_at IS NULL AND id = $5",
                )
                .bind(at)
                .bind(why)
                .bind(practice.as_uuid())
                .bind(patient.as_uuid())
                .bind(id.as_uuid())
                .execute(&mut tx)
                .await?,
                None => query(
                    "UPDATE app_link SET revoked_at = $1, revoked_why = $2 WHERE practice_id = $3 AND patient_id = $4 \
                 AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(why)
                .bind(practice.as_uuid())
                .bind(patient.as_uuid())
                .execute(&mut tx)
                .await?,
            };
        Self::commit_audited(tx, practice, &[audit]).await?;
        Ok(done.rows_affected())
    }

    async fn entry(&self, practice: PracticeId, id: EntryId) -> StoreResult<Option<Entry>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entry WHERE practice_id = $1 AND id = $2");
        self.row_by(&sql, practice, id.as_uuid(), rows::entry).await
    }

    async fn entries(&self, practice: PracticeId, patient: PatientId, q: EntryQuery) -> StoreResult<Vec<Entry>> {
        self.hot_entries(practice, patient, q).await
    }

    async fn entry_count(&self, practice: PracticeId, patient: PatientId) -> StoreResult<i64> {
        query("SELECT COUNT(*) AS n FROM entry WHERE practice_id = $1 AND patient_id = $2")
            .bind(practice.as_uuid())
            .bind(patient.as_uuid())
            .fetch_one(self.read())
            .await?
            .int("n")
    }

    async fn split_entry(
        &self,
        practice: PracticeId,
        original: EntryId,
        parts: &[Entry],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let Some(patient) = parts.first().map(|p| p.patient) else {
            return Err(StoreError::refused("a split needs parts"));
        };
        let mut tx = self.begin().await?;
        let q = query("DELETE FROM entry WHERE practice_id = $1 AND id = $2 AND patient_id = $3")
            .bind(practice.as_uuid())
            .bind(original.as_uuid())
            .bind(patient.as_uuid());
        Self::change_one_in(&mut tx, q, StoreError::NotFound("entry")).await?;
        for part in parts {
            Self::insert_entry(&mut tx, practice, part).await?;
        }
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn filing_queue(&self, practice: PracticeId, limit: u32) -> StoreResult<Vec<(Entry, PatientListing)>> {
        let columns: Vec<String> = ENTRY_COLUMNS.split(", ").map(|c| format!("e.{}", c.trim())).collect();
        let sql = format!(
            "SELECT {}, p.id AS p_id, p.nhs_number, p.title, p.given_name, p.family_name, p.date_of_birth, p.sex, \
             p.address_lines, p.postcode, p.date_of_death \
             FROM entry e JOIN patient p ON p.practice_id = e.practice_id AND p.id = e.patient_id \
             WHERE e.practice_id = $1 AND e.awaiting_filing ORDER BY e.entered_at, e.id LIMIT $2",
            columns.join(", ")
        );
        query(&sql)
            .bind(practice.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(self.read())
            .await?
            .iter()
            .map(|r| Ok((rows::entry(r)?, rows::listing(r)?)))
            .collect()
    }

    async fn file_entry(&self, practice: PracticeId, e: &Entry, audit: &AuditRecord) -> StoreResult<()> {
        let (reason, note, by, at) = visibility_columns(&e.visibility);
        let q = query(
            "UPDATE entry SET body = $1, awaiting_filing = $2, hidden_reason = $3, hidden_note = $4, hidden_by = $5, \
             hidden_at = $6 WHERE practice_id = $7 AND id = $8 AND awaiting_filing",
        )
        .bind(json(&e.body)?)
        .bind(e.awaits_filing())
        .bind(reason)
        .bind(note)
        .bind(by)
        .bind(at)
        .bind(practice.as_uuid())
        .bind(e.id.as_uuid());
        self.change_one_audited(practice, q, "entry waiting to be filed", &[audit]).await
    }

    async fn set_entries_visibility(
        &self,
        practice: PracticeId,
        changes: &[(EntryId, OnlineVisibility, AuditRecord)],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for (entry, v, _) in changes {
            let (reason, note, by, at) = visibility_columns(v);
            let q = query(
                "UPDATE entry SET hidden_reason = $1, hidden_note = $2, hidden_by = $3, hidden_at = $4 \
                 WHERE practice_id = $5 AND id = $6",
            )
            .bind(reason)
            .bind(note)
            .bind(by)
            .bind(at)
            .bind(practice.as_uuid())
            .bind(entry.as_uuid());
            Self::change_one_in(&mut tx, q, StoreError::NotFound("entry")).await?;
        }
        let audits: Vec<&AuditRecord> = changes.iter().map(|(_, _, a)| a).collect();
        Self::commit_audited(tx, practice, &audits).await
    }
}

impl SqlStore {
    /// A new app link and its "online services linked" task, inside `tx`.
    pub(super) async fn insert_app_link(tx: &mut Tx, practice: PracticeId, l: &AppLink, t: &Task) -> StoreResult<()> {
        query(
            "INSERT INTO app_link (practice_id, id, app_id, patient_id, via, linkage_ref, token_hash, linked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(practice.as_uuid())
        .bind(l.id.as_uuid())
        .bind(l.app.as_uuid())
        .bind(l.patient.as_uuid())
        .bind(l.via.as_str())
        .bind(&l.linkage_ref)
        .bind(l.token_hash.to_vec())
        .bind(l.linked_at)
        .execute(&mut *tx)
        .await?;
        Self::insert_task(tx, practice, t).await
    }
}
