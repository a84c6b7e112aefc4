//! [`FhirStore`] for both databases.

use super::SqlStore;
use crate::db::{query, Tx};
use crate::fhir::*;
use crate::rows::Cols;
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{AppId, AppLinkId, IntegrationId, PracticeId, ProxyLinkId};
use caldicott_core::online::AppLink;
use caldicott_core::tasks::Task;

fn hash_of(r: &impl Cols) -> StoreResult<[u8; 32]> {
    let hash: Vec<u8> = r.bytes("token_hash")?;
    hash.try_into().map_err(|_| StoreError::Corrupt("token hash".into()))
}

fn token_row(r: &impl Cols) -> StoreResult<FhirToken> {
    Ok(FhirToken {
        hash: hash_of(r)?,
        link: AppLinkId::from_uuid(r.uuid("link_id")?),
        proxy_link: r.opt_uuid("proxy_link_id")?.map(ProxyLinkId::from_uuid),
        scopes: r.text("scopes")?,
        issued_at: r.time("issued_at")?,
        expires_at: r.time("expires_at")?,
    })
}

/// An integration's access token and its integration, as `SYSTEM_TOKEN_AND_INTEGRATION` reads them.
pub(crate) fn system_caller_row(r: &impl Cols) -> StoreResult<(SystemToken, Integration)> {
    let token = SystemToken {
        hash: hash_of(r)?,
        integration: IntegrationId::from_uuid(r.uuid("integration_id")?),
        scopes: r.text("token_scopes")?,
        issued_at: r.time("issued_at")?,
        expires_at: r.time("expires_at")?,
    };
    Ok((token, integration_row(r)?))
}

fn integration_row(r: &impl Cols) -> StoreResult<Integration> {
    Ok(Integration {
        id: IntegrationId::from_uuid(r.uuid("id")?),
        name: r.text("name")?,
        client_id: r.text("client_id")?,
        public_key: r.text("public_key")?,
        scopes: r.text("scopes")?,
        active: r.flag("active")?,
        created_at: r.time("created_at")?,
        created_by: r.text("created_by")?,
    })
}

/// Tokens and assertion ids this long past their expiry are cleared as new ones come.
fn cleared_before(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    t - chrono::Duration::hours(6)
}

#[async_trait]
impl FhirStore for SqlStore {
    async fn create_fhir_token(&self, practice: PracticeId, t: &FhirToken, audit: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_fhir_token(&mut tx, practice, t, t.link).await?;
        // Expired tokens go as new ones come: the table holds only live ones and a few hours more.
        query("DELETE FROM fhir_token WHERE practice_id = $1 AND expires_at < $2")
            .bind(practice.as_uuid())
            .bind(cleared_before(t.issued_at))
            .execute(&mut tx)
            .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn fhir_token(&self, practice: PracticeId, hash: &[u8; 32]) -> StoreResult<Option<FhirToken>> {
        self.row_by(
            "SELECT * FROM fhir_token WHERE practice_id = $1 AND token_hash = $2",
            practice,
            hash.to_vec(),
            token_row,
        )
        .await
    }

    async fn create_integration(&self, practice: PracticeId, i: &Integration, audit: &AuditRecord) -> StoreResult<()> {
        let q = query(
            "INSERT INTO fhir_integration (practice_id, id, name, client_id, public_key, scopes, active, \
             created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(practice.as_uuid())
        .bind(i.id.as_uuid())
        .bind(&i.name)
        .bind(&i.client_id)
        .bind(&i.public_key)
        .bind(&i.scopes)
        .bind(i.active)
        .bind(i.created_at)
        .bind(&i.created_by);
        self.execute_audited(practice, q, &[audit]).await.map(drop)
    }

    async fn integrations(&self, practice: PracticeId) -> StoreResult<Vec<Integration>> {
        query("SELECT * FROM fhir_integration WHERE practice_id = $1 ORDER BY name, created_at")
            .bind(practice.as_uuid())
            .fetch_all(self.read())
            .await?
            .iter()
            .map(integration_row)
            .collect()
    }

    async fn integration_by_client_id(
        &self,
        practice: PracticeId,
        client_id: &str,
    ) -> StoreResult<Option<Integration>> {
        self.row_by(
            "SELECT * FROM fhir_integration WHERE practice_id = $1 AND client_id = $2",
            practice,
            client_id,
            integration_row,
        )
        .await
    }

    async fn set_integration_active(
        &self,
        practice: PracticeId,
        id: IntegrationId,
        active: bool,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let q = query("UPDATE fhir_integration SET active = $3 WHERE practice_id = $1 AND id = $2")
            .bind(practice.as_uuid())
            .bind(id.as_uuid())
            .bind(active);
        Self::change_one_in(&mut tx, q, StoreError::NotFound("integration")).await?;
        if !active {
            // Its tokens end with it, not only at their expiry.
            query("DELETE FROM fhir_system_token WHERE practice_id = $1 AND integration_id = $2")
                .bind(practice.as_uuid())
                .bind(id.as_uuid())
                .execute(&mut tx)
                .await?;
        }
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn create_system_token(
        &self,
        practice: PracticeId,
        t: &SystemToken,
        assertion: &AssertionUse,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::take_assertion(&mut tx, practice, t.integration.as_uuid(), assertion, t.issued_at).await?;
        query(
            "INSERT INTO fhir_system_token (practice_id, token_hash, integration_id, scopes, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(practice.as_uuid())
        .bind(t.hash.to_vec())
        .bind(t.integration.as_uuid())
        .bind(&t.scopes)
        .bind(t.issued_at)
        .bind(t.expires_at)
        .execute(&mut tx)
        .await?;
        query("DELETE FROM fhir_system_token WHERE practice_id = $1 AND expires_at < $2")
            .bind(practice.as_uuid())
            .bind(cleared_before(t.issued_at))
            .execute(&mut tx)
            .await?;
        Self::commit_audited(tx, practice, &[audit]).await
    }

    async fn exchange_fhir_token(
        &self,
        practice: PracticeId,
        (app, assertion): (AppId, &AssertionUse),
        (link, task, link_audit): (&AppLink, &Task, &AuditRecord),
        t: &FhirToken,
        audit: &AuditRecord,
    ) -> StoreResult<(AppLinkId, bool)> {
        let mut tx = self.begin().await?;
        Self::take_assertion(&mut tx, practice, app.as_uuid(), assertion, t.issued_at).await?;
        let lock = format!("SELECT id FROM patient WHERE practice_id = $1 AND id = $2{}", tx.row_lock());
        query(&lock)
            .bind(practice.as_uuid())
            .bind(link.patient.as_uuid())
            .fetch_optional(&mut tx)
            .await?
            .ok_or(StoreError::NotFound("patient"))?;
        let live = query(
            "SELECT id FROM app_link WHERE practice_id = $1 AND app_id = $2 AND patient_id = $3 \
             AND revoked_at IS NULL ORDER BY linked_at LIMIT 1",
        )
        .bind(practice.as_uuid())
        .bind(app.as_uuid())
        .bind(link.patient.as_uuid())
        .fetch_optional(&mut tx)
        .await?
        .map(|r| r.uuid("id").map(AppLinkId::from_uuid))
        .transpose()?;
        let (on, made) = match live {
            Some(id) => (id, false),
            None => {
                Self::insert_app_link(&mut tx, practice, link, task).await?;
                (link.id, true)
            }
        };
        Self::insert_fhir_token(&mut tx, practice, t, on).await?;
        let audits: Vec<&AuditRecord> = if made { vec![link_audit, audit] } else { vec![audit] };
        Self::commit_audited(tx, practice, &audits).await?;
        Ok((on, made))
    }

    async fn system_caller(
        &self,
        practice: PracticeId,
        hash: &[u8; 32],
    ) -> StoreResult<Option<(SystemToken, Integration)>> {
        self.hot_system_caller(practice, hash).await
    }
}

impl SqlStore {
    /// A client assertion taken once, inside `tx`: those expired go first; one already taken
    /// is a unique-key conflict. `client` is the integration's id or the app's (the column
    /// holds either; ids never collide).
    async fn take_assertion(
        tx: &mut Tx,
        practice: PracticeId,
        client: uuid::Uuid,
        assertion: &AssertionUse,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()> {
        query("DELETE FROM fhir_assertion WHERE practice_id = $1 AND expires_at < $2")
            .bind(practice.as_uuid())
            .bind(cleared_before(now))
            .execute(&mut *tx)
            .await?;
        query("INSERT INTO fhir_assertion (practice_id, integration_id, jti, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(practice.as_uuid())
            .bind(client)
            .bind(&assertion.jti)
            .bind(assertion.expires_at)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// An app's access token on link `on`, inside `tx`.
    async fn insert_fhir_token(tx: &mut Tx, practice: PracticeId, t: &FhirToken, on: AppLinkId) -> StoreResult<()> {
        query(
            "INSERT INTO fhir_token (practice_id, token_hash, link_id, proxy_link_id, scopes, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(practice.as_uuid())
        .bind(t.hash.to_vec())
        .bind(on.as_uuid())
        .bind(t.proxy_link.map(|p| p.as_uuid()))
        .bind(&t.scopes)
        .bind(t.issued_at)
        .bind(t.expires_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
