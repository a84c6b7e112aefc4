//! Practice integrations of the FHIR API: systems of the practice's own (a reporting tool, a
//! clinical decision support service) that read its records with `system/` scopes. An
//! administrator registers each with the public key it signs its client assertions with (SMART
//! Backend Services); the private key never reaches caldicott. Deactivating one ends its
//! tokens at once.

use crate::permit;
use crate::{new_id, App, AppError, AppResult, StaffPrincipal};
use caldicott_core::audit::{Action, Actor, ActorKind, Outcome};
use caldicott_core::ids::IntegrationId;
use caldicott_core::permissions::Permission;
use caldicott_store::fhir::Integration;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use uuid::Uuid;

pub(super) const CLIENT_PREFIX: &str = "int_";
/// The signing algorithms accepted for client assertions (SMART Backend Services asks servers
/// for RS384 and ES384).
pub(super) const ALGORITHMS: [Algorithm; 4] = [Algorithm::RS384, Algorithm::ES384, Algorithm::RS256, Algorithm::ES256];

/// What an administrator registers.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct NewIntegration {
    pub name: String,
    /// A public key in PEM (`-----BEGIN PUBLIC KEY-----`), or a JWK Set (or one JWK) in JSON.
    pub public_key: String,
    /// The `system/` scopes it may be given (empty: `system/*.read`).
    #[serde(default)]
    pub scopes: String,
}

pub(super) fn actor(i: &Integration) -> Actor {
    Actor { kind: ActorKind::Integration, id: i.id.to_string(), role: "integration".into() }
}

fn jwk_key(jwk: &Jwk) -> AppResult<DecodingKey> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_) => {
            DecodingKey::from_jwk(jwk).map_err(|e| AppError::BadRequest(format!("The key could not be read: {e}")))
        }
        _ => Err(AppError::BadRequest("Give an RSA or elliptic-curve (P-256, P-384) public key".into())),
    }
}

/// The keys (with their `kid`, for a JWK Set) that a registered public key holds.
pub(super) fn decoding_keys(text: &str) -> AppResult<Vec<(Option<String>, DecodingKey)>> {
    let text = text.trim();
    if text.contains("PRIVATE KEY") || text.contains("\"d\"") {
        return Err(AppError::BadRequest(
            "That is a private key: give only the public key (the private key stays with the integration)".into(),
        ));
    }
    if text.starts_with('{') {
        let keys: Vec<Jwk> = match serde_json::from_str::<JwkSet>(text) {
            Ok(set) => set.keys,
            Err(_) => vec![serde_json::from_str::<Jwk>(text)
                .map_err(|e| AppError::BadRequest(format!("The JSON is not a JWK or a JWK Set: {e}")))?],
        };
        if keys.is_empty() {
            return Err(AppError::BadRequest("The JWK Set holds no keys".into()));
        }
        return keys.iter().map(|k| Ok((k.common.key_id.clone(), jwk_key(k)?))).collect();
    }
    if text.starts_with("-----BEGIN") {
        let bytes = text.as_bytes();
        let key = DecodingKey::from_ec_pem(bytes).or_else(|_| DecodingKey::from_rsa_pem(bytes)).map_err(|_| {
            AppError::BadRequest("The PEM is not an RSA or elliptic-curve public key (BEGIN PUBLIC KEY)".into())
        })?;
        return Ok(vec![(None, key)]);
    }
    Err(AppError::BadRequest("Give the public key as PEM (-----BEGIN PUBLIC KEY-----) or as a JWK Set in JSON".into()))
}

/// A new P-384 key pair for an integration: (private key, PKCS#8 PEM; public key, SPKI PEM).
/// The demo makes one; an integration's supplier would make its own and give only the public one.
pub fn new_key_pair() -> AppResult<(String, String)> {
    use p384::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p384::SecretKey::random(&mut rand::rngs::OsRng);
    let private = secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| AppError::Internal(e.to_string()))?;
    let public =
        secret.public_key().to_public_key_pem(LineEnding::LF).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((private.to_string(), public))
}

/// A client assertion as an integration makes one (SMART Backend Services): signed with its
/// private key (ES384 for an elliptic-curve key, RS384 for RSA), for the token endpoint at
/// `token_url`, good for five minutes and once.
pub fn client_assertion(
    client_id: &str,
    private_key_pem: &str,
    token_url: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<String> {
    let pem = private_key_pem.as_bytes();
    let (alg, key) = match jsonwebtoken::EncodingKey::from_ec_pem(pem) {
        Ok(k) => (Algorithm::ES384, k),
        Err(_) => (
            Algorithm::RS384,
            jsonwebtoken::EncodingKey::from_rsa_pem(pem).map_err(|_| {
                AppError::BadRequest("the key is not an RSA or elliptic-curve private key in PEM".into())
            })?,
        ),
    };
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": (now + chrono::Duration::minutes(4)).timestamp(),
        "iat": now.timestamp(),
        "jti": Uuid::now_v7().to_string(),
    });
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).map_err(|e| AppError::Internal(e.to_string()))
}

impl App {
    /// Registers an integration with its public key and the scopes it may be given.
    pub async fn register_integration(&self, who: &StaffPrincipal, new: &NewIntegration) -> AppResult<Integration> {
        permit(who, Permission::ManageAppsAndIntegrations)?;
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppError::BadRequest("Enter the integration's name (up to 100 characters)".into()));
        }
        decoding_keys(&new.public_key)?;
        let scopes = super::Scopes::parse_system(&new.scopes)
            .map_err(|e| AppError::BadRequest(e.to_string().replace(" (invalid_scope)", "")))?;
        let id = IntegrationId::from_uuid(new_id());
        let integration = Integration {
            id,
            name: name.to_owned(),
            client_id: format!("{CLIENT_PREFIX}{}{}", who.practice.as_uuid().simple(), Uuid::now_v7().simple()),
            public_key: new.public_key.trim().to_owned(),
            scopes: scopes.as_string(),
            active: true,
            created_at: self.now(),
            created_by: who.name.clone(),
        };
        let audit = self.audit_record(
            who,
            None,
            Action::FhirIntegrationRegister,
            format!("integration/{id}"),
            Outcome::Success,
            format!("{} scope={}", integration.name, integration.scopes),
        );
        self.store.create_integration(who.practice, &integration, &audit).await?;
        Ok(integration)
    }

    pub async fn integrations(&self, who: &StaffPrincipal) -> AppResult<Vec<Integration>> {
        permit(who, Permission::ManageAppsAndIntegrations)?;
        Ok(self.store.integrations(who.practice).await?)
    }

    /// Turns an integration off (its tokens end at once) or on again.
    pub async fn set_integration_active(&self, who: &StaffPrincipal, id: &str, active: bool) -> AppResult<()> {
        permit(who, Permission::ManageAppsAndIntegrations)?;
        let id = id.parse::<IntegrationId>().map_err(|_| AppError::NotFound("no such integration".into()))?;
        let audit = self.audit_record(
            who,
            None,
            Action::FhirIntegrationChange,
            format!("integration/{id}"),
            Outcome::Success,
            if active { "reactivated" } else { "deactivated" },
        );
        self.store.set_integration_active(who.practice, id, active, &audit).await.map_err(|e| match e {
            caldicott_store::StoreError::NotFound(_) => AppError::NotFound("no such integration".into()),
            other => other.into(),
        })
    }
}
