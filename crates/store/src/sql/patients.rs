//! [`PatientStore`] on both databases: patients, their registrations and their online access settings, grants, accounts and proxies.

use super::*;
use async_trait::async_trait;
use caldicott_core::gpconnect::SharingDissent;

#[async_trait]
impl PatientStore for SqlStore {
    async fn create_patient(&self, practice: PracticeId, p: &Patient, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_patient(&mut tx, practice, p).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn patient(&self, practice: PracticeId, id: PatientId) -> StoreResult<Option<Patient>> {
        self.hot_patient(practice, PatientKey::Id(id.as_uuid())).await
    }

    async fn patient_by_nhs_number(&self, practice: PracticeId, nhs: &NhsNumber) -> StoreResult<Option<Patient>> {
        self.hot_patient(practice, PatientKey::Nhs(nhs.as_str())).await
    }

    async fn patient_count(&self, practice: PracticeId) -> StoreResult<i64> {
        query("SELECT COUNT(*) AS n FROM patient WHERE practice_id = $1")
            .bind(practice.as_uuid())
            .fetch_one(self.read())
            .await?
            .int("n")
    }

    async fn end_registration(
        &self,
        practice: PracticeId,
        patient: PatientId,
        on: NaiveDate,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE registration SET ended = $1 WHERE practice_id = $2 AND patient_id = $3 AND ended IS NULL AND started <= $1",
        )
        .bind(on)
        .bind(practice.as_uuid())
        .bind(patient.as_uuid());
        self.change_one_audited(practice, q, "current registration", &[audit]).await
    }

    async fn recently_viewed(
        &self,
        practice: PracticeId,
        staff: StaffId,
        limit: u32,
    ) -> StoreResult<Vec<PatientListing>> {
        let ids: Vec<Uuid> = query(
            "SELECT patient_id, MAX(seq) AS last FROM audit_event \
             WHERE practice_id = $1 AND actor_id = $2 AND action = 'record.view_staff' AND outcome = 'success' \
             AND patient_id IS NOT NULL GROUP BY patient_id ORDER BY last DESC LIMIT $3",
        )
        .bind(practice.as_uuid())
        .bind(staff.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?
        .iter()
        .filter_map(|r| r.opt_text("patient_id").ok().flatten().and_then(|s| Uuid::try_parse(&s).ok()))
        .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT p.id AS p_id, p.* FROM patient p WHERE p.practice_id = $1 AND p.id IN ({})",
            placeholders(2, ids.len())
        );
        let mut q = query(&sql).bind(practice.as_uuid());
        for id in &ids {
            q = q.bind(*id);
        }
        let found: Vec<PatientListing> =
            q.fetch_all(self.read()).await?.iter().map(rows::listing).collect::<StoreResult<_>>()?;
        // In the order they were viewed.
        Ok(ids.iter().filter_map(|id| found.iter().find(|p| p.id.as_uuid() == *id).cloned()).collect())
    }

    async fn search_patients(
        &self,
        practice: PracticeId,
        q: &PatientSearch,
        limit: u32,
    ) -> StoreResult<Vec<PatientListing>> {
        let mut sql = String::from("SELECT * FROM patient WHERE practice_id = $1");
        let mut n = 2;
        if q.nhs_number.is_some() {
            sql.push_str(&format!(" AND nhs_number = ${n}"));
            n += 1;
        }
        if q.date_of_birth.is_some() {
            sql.push_str(&format!(" AND date_of_birth = ${n}"));
            n += 1;
        }
        if q.postcode.is_some() {
            sql.push_str(&format!(" AND replace(upper(postcode), ' ', '') = ${n}"));
            n += 1;
        }
        for _ in &q.names {
            sql.push_str(&format!(" AND (lower(family_name) LIKE ${n} OR lower(given_name) LIKE ${n})"));
            n += 1;
        }
        sql.push_str(&format!(" ORDER BY family_name, given_name, date_of_birth LIMIT ${n}"));
        let mut query = query(&sql).bind(practice.as_uuid());
        if let Some(nhs) = &q.nhs_number {
            query = query.bind(nhs.as_str());
        }
        if let Some(dob) = q.date_of_birth {
            query = query.bind(dob);
        }
        if let Some(pc) = &q.postcode {
            query = query.bind(pc);
        }
        for word in &q.names {
            let clean: String = word.chars().filter(|c| *c != '%' && *c != '_' && *c != '\\').collect();
            query = query.bind(format!("{clean}%"));
        }
        query
            .bind(i64::from(limit))
            .fetch_all(self.read())
            .await?
            .iter()
            .map(|r| {
                let p = rows::patient(practice, r, Vec::new())?;
                Ok(PatientListing {
                    id: p.id,
                    nhs_number: p.nhs_number,
                    name: p.name,
                    date_of_birth: p.date_of_birth,
                    sex: p.sex,
                    address: p.contact.address,
                    date_of_death: p.date_of_death,
                })
            })
            .collect()
    }

    async fn import_patients(
        &self,
        practice: PracticeId,
        batch: &[PatientImport],
        audit: &[AuditRecord],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for item in batch {
            Self::insert_patient(&mut tx, practice, &item.patient).await?;
            Self::write_access(&mut tx, practice, item.patient.id, &item.access).await?;
            for a in &item.accounts {
                Self::insert_account(&mut tx, practice, a).await?;
            }
            for e in &item.entries {
                if e.patient != item.patient.id {
                    return Err(StoreError::refused("an entry belongs to another patient"));
                }
                Self::insert_entry(&mut tx, practice, e).await?;
            }
        }
        for item in batch {
            for link in &item.proxies {
                if link.patient != item.patient.id {
                    return Err(StoreError::refused("a proxy link belongs to another patient"));
                }
                Self::insert_proxy(&mut tx, practice, link).await?;
            }
        }
        let records: Vec<&AuditRecord> = audit.iter().collect();
        Self::commit_audited(tx, practice, &records).await
    }

    async fn access_facts(&self, practice: PracticeId, patient: PatientId) -> StoreResult<AccessFacts> {
        self.hot_access_facts(practice, patient).await
    }

    async fn set_access_settings(
        &self,
        practice: PracticeId,
        patient: PatientId,
        s: &OnlineAccessSettings,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::write_access(&mut tx, practice, patient, s).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn create_online_account(
        &self,
        practice: PracticeId,
        a: &OnlineAccount,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_account(&mut tx, practice, a).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn online_accounts(&self, practice: PracticeId, holder: PatientId) -> StoreResult<Vec<OnlineAccount>> {
        query("SELECT * FROM online_account WHERE practice_id = $1 AND holder_id = $2 ORDER BY created_at")
            .bind(practice.as_uuid())
            .bind(holder.as_uuid())
            .fetch_all(self.read())
            .await?
            .iter()
            .map(|r| {
                let kind: String = r.text("kind")?;
                let level: String = r.text("identity_level")?;
                Ok(OnlineAccount {
                    id: AccountId::from_uuid(r.uuid("id")?),
                    holder,
                    kind: AccountKind::parse(&kind).ok_or_else(|| corrupt("account kind", &kind))?,
                    identity: IdentityLevel::parse(&level).ok_or_else(|| corrupt("identity level", &level))?,
                    created_at: r.time("created_at")?,
                })
            })
            .collect()
    }

    async fn create_proxy_link(&self, practice: PracticeId, l: &ProxyLink, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_proxy(&mut tx, practice, l).await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn proxy_link(&self, practice: PracticeId, id: ProxyLinkId) -> StoreResult<Option<ProxyLink>> {
        let sql = format!("SELECT {PROXY_COLUMNS} FROM proxy_link WHERE practice_id = $1 AND id = $2");
        self.row_by(&sql, practice, id.as_uuid(), rows::proxy).await
    }

    async fn proxy_links_for_patient(&self, practice: PracticeId, patient: PatientId) -> StoreResult<Vec<ProxyLink>> {
        let sql = format!(
            "SELECT {PROXY_COLUMNS} FROM proxy_link WHERE practice_id = $1 AND patient_id = $2 ORDER BY granted_on"
        );
        self.rows_by(&sql, practice, patient.as_uuid(), rows::proxy).await
    }

    async fn gp_connect_dissent(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> StoreResult<Option<SharingDissent>> {
        self.row_by(
            "SELECT recorded_at, recorded_by, reason FROM gp_connect_dissent WHERE practice_id = $1 AND patient_id = $2",
            practice,
            patient.as_uuid(),
            |r| {
                Ok(SharingDissent {
                    recorded_at: r.time("recorded_at")?,
                    recorded_by: r.text("recorded_by")?,
                    reason: r.text("reason")?,
                })
            },
        )
        .await
    }

    async fn set_gp_connect_dissent(
        &self,
        practice: PracticeId,
        patient: PatientId,
        dissent: Option<&SharingDissent>,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // The patient must be this practice's: no row is written for anyone else.
        query("SELECT id FROM patient WHERE practice_id = $1 AND id = $2")
            .bind(practice.as_uuid())
            .bind(patient.as_uuid())
            .fetch_optional(&mut tx)
            .await?
            .ok_or(StoreError::NotFound("patient"))?;
        let changed = match dissent {
            Some(d) => query(
                "INSERT INTO gp_connect_dissent (practice_id, patient_id, recorded_at, recorded_by, reason) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (practice_id, patient_id) DO NOTHING",
            )
            .bind(practice.as_uuid())
            .bind(patient.as_uuid())
            .bind(d.recorded_at)
            .bind(&d.recorded_by)
            .bind(&d.reason),
            None => query("DELETE FROM gp_connect_dissent WHERE practice_id = $1 AND patient_id = $2")
                .bind(practice.as_uuid())
                .bind(patient.as_uuid()),
        }
        .execute(&mut tx)
        .await?
        .rows_affected();
        if changed == 0 {
            // Already so: the transaction is dropped, and nothing is audited.
            return Ok(false);
        }
        Self::commit_audited(tx, practice, &[audit]).await?;
        Ok(true)
    }
}
