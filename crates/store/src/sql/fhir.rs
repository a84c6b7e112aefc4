//! [`FhirStore`] for both databases.

use super::{db, PostgresStore, SqliteStore};
use crate::fhir::*;
use crate::rows::Cols;
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use caldicott_core::audit::AuditRecord;
use caldicott_core::ids::{AppLinkId, PracticeId};

fn token_row(r: &impl Cols) -> StoreResult<FhirToken> {
    let hash: Vec<u8> = r.bytes("token_hash")?;
    Ok(FhirToken {
        hash: hash.try_into().map_err(|_| StoreError::Corrupt("token hash".into()))?,
        link: AppLinkId::from_uuid(r.uuid("link_id")?),
        scopes: r.text("scopes")?,
        issued_at: r.time("issued_at")?,
        expires_at: r.time("expires_at")?,
    })
}

macro_rules! fhir_store {
    ($Store:ident) => {
        #[async_trait]
        impl FhirStore for $Store {
            async fn create_fhir_token(
                &self,
                practice: PracticeId,
                t: &FhirToken,
                audit: &AuditRecord,
            ) -> StoreResult<()> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO fhir_token (practice_id, token_hash, link_id, scopes, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(practice.as_uuid())
                .bind(t.hash.to_vec())
                .bind(t.link.as_uuid())
                .bind(&t.scopes)
                .bind(t.issued_at)
                .bind(t.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                // Expired tokens go as new ones come: the table holds only live ones and a few hours more.
                sqlx::query("DELETE FROM fhir_token WHERE practice_id = $1 AND expires_at < $2")
                    .bind(practice.as_uuid())
                    .bind(t.issued_at - chrono::Duration::hours(6))
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Self::append_in(&mut tx, practice, &[audit]).await?;
                tx.commit().await.map_err(db)
            }

            async fn fhir_token(&self, practice: PracticeId, hash: &[u8; 32]) -> StoreResult<Option<FhirToken>> {
                let row = sqlx::query("SELECT * FROM fhir_token WHERE practice_id = $1 AND token_hash = $2")
                    .bind(practice.as_uuid())
                    .bind(hash.to_vec())
                    .fetch_optional(self.read())
                    .await
                    .map_err(db)?;
                row.as_ref().map(token_row).transpose()
            }
        }
    };
}

fhir_store!(SqliteStore);
fhir_store!(PostgresStore);
