//! [`PracticeStore`] on both databases: practices and their online-services settings.

use super::*;
use async_trait::async_trait;

#[async_trait]
impl PracticeStore for SqlStore {
    async fn create_practice(&self, p: &Practice, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        query(
            "INSERT INTO practice (id, ods_code, name, telephone, address_lines, postcode, switch_on, paused, \
             default_level, proxy_review_age, created_at, visible_online_by_default, show_staff_names, cancel_cutoff_hours, pause_reason, accept_update_record, \
             gp_connect_structured, gp_connect_documents, gp_connect_asid) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(p.id.as_uuid())
        .bind(p.ods_code.as_str())
        .bind(&p.name)
        .bind(&p.telephone)
        .bind(json(&p.address.lines)?)
        .bind(&p.address.postcode)
        .bind(p.online.prospective_switch_on)
        .bind(p.online.paused)
        .bind(p.online.default_level.as_str())
        .bind(i32::from(p.online.proxy_review_age.years()))
        .bind(Utc::now())
        .bind(p.online.visible_online_by_default)
        .bind(p.online.show_staff_names_to_patients)
        .bind(i32::from(p.online.cancel_cutoff_hours))
        .bind(if p.online.paused { Some(p.online.pause_reason.as_str()) } else { None })
        .bind(p.online.accept_update_record)
        .bind(p.online.gp_connect_structured)
        .bind(p.online.gp_connect_documents)
        .bind(p.online.gp_connect_asid.as_ref().map(|a| a.as_str()))
        .execute(&mut tx)
        .await?;
        query("INSERT INTO audit_head (practice_id, count, hash) VALUES ($1, $2, $3)")
            .bind(p.id.as_uuid())
            .bind(0i64)
            .bind(ChainHash::GENESIS.0.to_vec())
            .execute(&mut tx)
            .await?;
        Self::commit_audited(tx, p.id, &[audit]).await
    }

    async fn practice(&self, id: PracticeId) -> StoreResult<Option<Practice>> {
        self.hot_practice(id).await
    }

    async fn practice_by_ods(&self, ods: &OdsCode) -> StoreResult<Option<Practice>> {
        query("SELECT * FROM practice WHERE ods_code = $1")
            .bind(ods.as_str())
            .fetch_optional(self.read())
            .await?
            .map(|r| rows::practice(&r))
            .transpose()
    }

    async fn practices(&self) -> StoreResult<Vec<Practice>> {
        query("SELECT * FROM practice ORDER BY ods_code")
            .fetch_all(self.read())
            .await?
            .iter()
            .map(rows::practice)
            .collect()
    }

    async fn set_online_services(
        &self,
        practice: PracticeId,
        s: &OnlineServicesSettings,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let q = query(
            "UPDATE practice SET switch_on = $1, paused = $2, default_level = $3, proxy_review_age = $4, \
             visible_online_by_default = $5, show_staff_names = $6, cancel_cutoff_hours = $7, pause_reason = $8, \
             accept_update_record = $9, gp_connect_structured = $10, gp_connect_documents = $11, gp_connect_asid = $12 WHERE id = $13",
        )
        .bind(s.prospective_switch_on)
        .bind(s.paused)
        .bind(s.default_level.as_str())
        .bind(i32::from(s.proxy_review_age.years()))
        .bind(s.visible_online_by_default)
        .bind(s.show_staff_names_to_patients)
        .bind(i32::from(s.cancel_cutoff_hours))
        .bind(if s.paused { Some(s.pause_reason.as_str()) } else { None })
        .bind(s.accept_update_record)
        .bind(s.gp_connect_structured)
        .bind(s.gp_connect_documents)
        .bind(s.gp_connect_asid.as_ref().map(|a| a.as_str()))
        .bind(practice.as_uuid());
        self.change_one_audited(practice, q, "practice", &[audit]).await
    }
}
