//! The token endpoint and bearer tokens of the FHIR API.
//!
//! - `grant_type=refresh_token`: a linked app (its client id and secret by HTTP Basic) swaps its
//!   link credential for a 15-minute access token with `patient/` scopes, for the link's holder
//!   or, with `patient=<id>`, for someone the holder acts for as a proxy.
//! - `grant_type=client_credentials` with a signed client assertion (SMART Backend Services,
//!   `private_key_jwt`): a practice integration gets a 5-minute token with `system/` scopes, for
//!   its own practice only. Each assertion is good once.
//!
//! Access tokens are random, kept only as SHA-256 hashes, prefixed with the practice's id so
//! that every look-up is scoped by practice, and checked with what they stand on (the link, the
//! proxy link, the app or the integration) on every request.

use super::integrations::{actor as integration_actor, decoding_keys, ALGORITHMS};
use super::{AppCaller, FhirCaller, ScopeContext, Scopes, SystemCaller};
use crate::apps::sha256;
use crate::{App, AppError, AppResult};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::audit::{Action, Actor, ActorKind, Outcome};
use caldicott_core::ids::*;
use caldicott_core::visibility::proxy_link_lapse;
use caldicott_store::fhir::{AssertionUse, FhirToken, SystemToken};
use caldicott_store::StoreError;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

const APP_PREFIX: &str = "fat_";
const SYSTEM_PREFIX: &str = "fst_";
/// How long an app's access token lasts; the app asks again with its link credential.
pub const ACCESS_LIFETIME: Duration = Duration::minutes(15);
/// How long an integration's access token lasts (SMART Backend Services: at most 5 minutes).
pub const SYSTEM_LIFETIME: Duration = Duration::minutes(5);
/// The one client assertion type accepted.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A client assertion may not be made to last longer than this.
const ASSERTION_MAX_LIFETIME: Duration = Duration::minutes(5);

/// A token request, as the endpoint received it.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub grant_type: String,
    /// HTTP Basic client credentials (apps).
    pub basic: Option<(String, String)>,
    pub refresh_token: String,
    pub scope: String,
    /// For an app whose user acts for someone: that person's Patient id.
    pub patient: Option<String>,
    pub client_assertion_type: String,
    pub client_assertion: String,
}

impl TokenRequest {
    /// An app's request: its client credentials and link token, for the link's holder.
    pub fn app(client_id: &str, client_secret: &str, link_token: &str, scope: &str) -> Self {
        Self {
            grant_type: "refresh_token".into(),
            basic: Some((client_id.to_owned(), client_secret.to_owned())),
            refresh_token: link_token.to_owned(),
            scope: scope.to_owned(),
            ..Self::default()
        }
    }
}

/// The answer of the token endpoint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    /// SMART launch context: the patient a patient-bound token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

/// Why a token was refused, as OAuth 2.0 names it (RFC 6749 §5.2), or a failure of our own.
#[derive(Debug)]
pub enum TokenError {
    OAuth { error: &'static str, description: String },
    App(AppError),
}

impl From<AppError> for TokenError {
    fn from(e: AppError) -> Self {
        Self::App(e)
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        Self::App(e.into())
    }
}

fn oauth(error: &'static str, description: impl Into<String>) -> TokenError {
    TokenError::OAuth { error, description: description.into() }
}

fn random_secret() -> String {
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The claims a client assertion must carry.
#[derive(Debug, serde::Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
    #[serde(default)]
    nbf: Option<i64>,
}

/// The practice a client id, or an access token after its prefix, names (32 hex digits first).
fn practice_of(rest: &str) -> Option<PracticeId> {
    (rest.len() >= 32 && rest.is_char_boundary(32))
        .then(|| Uuid::try_parse(&rest[..32]).ok().map(PracticeId::from_uuid))
        .flatten()
}

impl App {
    /// The token endpoint.
    pub async fn fhir_token(&self, r: &TokenRequest) -> Result<TokenResponse, TokenError> {
        match r.grant_type.as_str() {
            "refresh_token" => self.app_token(r).await,
            "client_credentials" => self.system_token(r).await,
            _ => Err(oauth(
                "unsupported_grant_type",
                "grant_type must be refresh_token (an app, with its link's token) or client_credentials \
                 (a practice integration, with a client assertion)",
            )),
        }
    }

    /// A linked app's token: its link credential and client credentials, for the holder or for
    /// someone the holder acts for.
    async fn app_token(&self, r: &TokenRequest) -> Result<TokenResponse, TokenError> {
        let Some((client_id, client_secret)) = &r.basic else {
            return Err(oauth("invalid_client", "send the app's client id and secret with HTTP Basic authentication"));
        };
        // The client first (a refusal is audited), then what it asks for.
        let (_, client) = self.app_credentials(client_id, client_secret).await.map_err(|e| match e {
            AppError::Unauthenticated(_) => oauth("invalid_client", "the app's client id or secret is not right"),
            other => TokenError::App(other),
        })?;
        let scopes = Scopes::parse(&r.scope).map_err(|e| oauth("invalid_scope", e.to_string()))?;
        let refused = || oauth("invalid_grant", "the link's token is not right, or is not this app's");
        let (practice, link, app) = self.app_link_of_token(&r.refresh_token).await.map_err(|_| refused())?;
        if app.id != client.id {
            return Err(refused());
        }
        // For someone else: a live proxy link of the holder's, for that person.
        let proxy = match r.patient.as_deref().map(|p| p.trim().trim_start_matches("Patient/")) {
            None | Some("") => None,
            Some(p) if p == link.patient.to_string() => None,
            Some(p) => {
                let not_theirs = || oauth("invalid_grant", "the link's holder does not act for that patient online");
                let asked = Uuid::try_parse(p).map(PatientId::from_uuid).map_err(|_| not_theirs())?;
                let mut live = None;
                for l in self.store.proxy_links_for_proxy(practice, link.patient).await? {
                    if l.patient == asked {
                        live = self.live_proxy_link(practice, l).await?;
                        if live.is_some() {
                            break;
                        }
                    }
                }
                Some(live.ok_or_else(not_theirs)?)
            }
        };
        let secret = random_secret();
        let now = self.now();
        let token = FhirToken {
            hash: sha256(&secret),
            link: link.id,
            proxy_link: proxy.as_ref().map(|p| p.id),
            scopes: scopes.as_string(),
            issued_at: now,
            expires_at: now + ACCESS_LIFETIME,
        };
        let patient = proxy.as_ref().map_or(link.patient, |p| p.patient);
        let detail = match &proxy {
            None => format!("scope={}", token.scopes),
            Some(p) => format!("scope={} proxy_link={}", token.scopes, p.id),
        };
        let audit = self.patient_audit(
            Actor { kind: ActorKind::App, id: app.id.to_string(), role: "app".into() },
            Some(patient),
            Action::FhirTokenIssue,
            format!("app_link/{}", link.id),
            Outcome::Success,
            detail,
        );
        self.store.create_fhir_token(practice, &token, &audit).await?;
        Ok(TokenResponse {
            access_token: format!("{APP_PREFIX}{}{secret}", practice.as_uuid().simple()),
            token_type: "Bearer",
            expires_in: ACCESS_LIFETIME.num_seconds(),
            scope: token.scopes,
            patient: Some(patient.to_string()),
        })
    }

    /// The proxy link if it still lets its proxy act online (active, not ended, not lapsed at
    /// the review age or 16, the person registered).
    async fn live_proxy_link(
        &self,
        practice: PracticeId,
        l: caldicott_core::access::ProxyLink,
    ) -> AppResult<Option<caldicott_core::access::ProxyLink>> {
        if l.status != caldicott_core::access::ProxyStatus::Active {
            return Ok(None);
        }
        let Some(patient) = self.store.patient(practice, l.patient).await? else { return Ok(None) };
        let Some(p) = self.store.practice(practice).await? else { return Ok(None) };
        Ok(proxy_link_lapse(&l, &patient, &p.online, self.today()).is_none().then_some(l))
    }

    /// A practice integration's token: a client assertion signed with its registered key.
    async fn system_token(&self, r: &TokenRequest) -> Result<TokenResponse, TokenError> {
        if r.client_assertion_type != ASSERTION_TYPE || r.client_assertion.is_empty() {
            return Err(oauth(
                "invalid_client",
                format!("send client_assertion_type={ASSERTION_TYPE} and a client_assertion signed with the integration's key"),
            ));
        }
        let refused = || oauth("invalid_client", "the client assertion is not right");
        let header = jsonwebtoken::decode_header(&r.client_assertion).map_err(|_| refused())?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(oauth("invalid_client", "client assertions are signed with RS384, ES384, RS256 or ES256"));
        }
        // Who it says it is, to find the key; nothing of it is believed until the key checks it.
        let said: AssertionClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(&r.client_assertion).map_err(|_| refused())?;
        let practice =
            said.iss.strip_prefix(super::integrations::CLIENT_PREFIX).and_then(practice_of).ok_or_else(refused)?;
        let Some(integration) = self.store.integration_by_client_id(practice, &said.iss).await? else {
            self.credential_refused(None, Action::FhirTokenIssue, format!("client/{}", said.iss), "unknown client id")
                .await?;
            return Err(refused());
        };
        // From here the integration is known: every refusal is audited at its practice.
        let denied = |why: &'static str, err: TokenError| {
            let (actor, entity) = (integration_actor(&integration), format!("integration/{}", integration.id));
            async move {
                self.credential_refused(Some((practice, actor)), Action::FhirTokenIssue, entity, why).await?;
                Err::<TokenResponse, TokenError>(err)
            }
        };
        if !integration.active {
            return denied("the integration is turned off", refused()).await;
        }
        let Ok(keys) = decoding_keys(&integration.public_key) else {
            return denied("its registered key cannot be read", refused()).await;
        };
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.validate_exp = false; // checked below against the server's clock
        validation.set_required_spec_claims(&["iss", "sub", "aud", "exp", "jti"]);
        // The audience is this service's token endpoint at its configured public URL, never
        // one built from the request's Host header.
        validation.set_audience(&[self.fhir_token_url()]);
        validation.set_issuer(&[integration.client_id.as_str()]);
        let Some(claims) = keys
            .iter()
            .filter(|(kid, k)| {
                (header.kid.is_none() || kid.is_none() || *kid == header.kid) && k.family() == header.alg.family()
            })
            .find_map(|(_, k)| jsonwebtoken::decode::<AssertionClaims>(&r.client_assertion, k, &validation).ok())
            .map(|d| d.claims)
        else {
            return denied("signature, audience or issuer not right", refused()).await;
        };
        let now = self.now();
        let Some(exp) = DateTime::<Utc>::from_timestamp(claims.exp, 0) else {
            return denied("no usable expiry", refused()).await;
        };
        let leeway = Duration::seconds(60);
        if claims.sub != claims.iss
            || exp + leeway < now
            || exp > now + ASSERTION_MAX_LIFETIME + leeway
            || claims.nbf.and_then(|n| DateTime::<Utc>::from_timestamp(n, 0)).is_some_and(|n| n > now + leeway)
            || claims.jti.trim().is_empty()
            || claims.jti.len() > 200
        {
            return denied(
                "expired, too long-lived, or without sub or jti",
                oauth(
                    "invalid_client",
                    "the client assertion must be current, last at most five minutes, name the integration as iss \
                     and sub, and carry a jti",
                ),
            )
            .await;
        }
        let allowed = Scopes::stored(ScopeContext::System, &integration.scopes);
        let scopes = Scopes::parse_system(&r.scope).map_err(|e| oauth("invalid_scope", e.to_string()))?;
        let scopes = if r.scope.trim().is_empty() { allowed.clone() } else { scopes };
        if !scopes.within(&allowed) {
            return Err(oauth("invalid_scope", format!("this integration may be given {} only", allowed.as_string())));
        }
        let secret = random_secret();
        let token = SystemToken {
            hash: sha256(&secret),
            integration: integration.id,
            scopes: scopes.as_string(),
            issued_at: now,
            expires_at: now + SYSTEM_LIFETIME,
        };
        let audit = self.patient_audit(
            integration_actor(&integration),
            None,
            Action::FhirTokenIssue,
            format!("integration/{}", integration.id),
            Outcome::Success,
            format!("scope={}", token.scopes),
        );
        let used = AssertionUse { jti: claims.jti, expires_at: exp + leeway };
        match self.store.create_system_token(practice, &token, &used, &audit).await {
            Err(StoreError::Conflict(_)) => {
                return denied(
                    "client assertion used before",
                    oauth("invalid_grant", "this client assertion was used before: make a new one each time"),
                )
                .await
            }
            other => other?,
        }
        Ok(TokenResponse {
            access_token: format!("{SYSTEM_PREFIX}{}{secret}", practice.as_uuid().simple()),
            token_type: "Bearer",
            expires_in: SYSTEM_LIFETIME.num_seconds(),
            scope: token.scopes,
            patient: None,
        })
    }

    /// Who a bearer token belongs to: an app's or an integration's access token, or a member of
    /// staff's API token. What each stands on is checked on every request.
    pub async fn fhir_caller(&self, bearer: &str) -> AppResult<FhirCaller> {
        let refused = || AppError::Unauthenticated("the access token is not right, has expired or was revoked".into());
        let bearer = bearer.trim();
        if let Some(rest) = bearer.strip_prefix(SYSTEM_PREFIX) {
            let practice = practice_of(rest).filter(|_| rest.len() > 32).ok_or_else(refused)?;
            // The token and the integration it stands on, in one read: a token of an integration
            // turned off since is refused on its next request.
            let (token, integration) =
                self.store.system_caller(practice, &sha256(&rest[32..])).await?.ok_or_else(refused)?;
            if token.expires_at <= self.now() || !integration.active {
                return Err(refused());
            }
            let scopes = Scopes::stored(ScopeContext::System, &token.scopes);
            return Ok(FhirCaller::System(Box::new(SystemCaller { practice, integration, scopes })));
        }
        let Some(rest) = bearer.strip_prefix(APP_PREFIX) else {
            let staff = crate::auth::authenticate(self, bearer).await?;
            staff.require_team("administrators and ICB analysts do not read patient records")?;
            return Ok(FhirCaller::Staff(staff));
        };
        let practice = practice_of(rest).filter(|_| rest.len() > 32).ok_or_else(refused)?;
        let token = self.store.fhir_token(practice, &sha256(&rest[32..])).await?.ok_or_else(refused)?;
        if token.expires_at <= self.now() {
            return Err(refused());
        }
        let link = self.store.app_link(practice, token.link).await?.ok_or_else(refused)?;
        if link.revoked_at.is_some() {
            return Err(refused());
        }
        let app =
            self.store.apps(practice).await?.into_iter().find(|a| a.id == link.app && a.active).ok_or_else(refused)?;
        // A token for someone the holder acts for lasts only while the proxy link does.
        let proxy = match token.proxy_link {
            None => None,
            Some(id) => {
                let l = self
                    .store
                    .proxy_link(practice, id)
                    .await?
                    .filter(|l| l.proxy == link.patient)
                    .ok_or_else(refused)?;
                Some(self.live_proxy_link(practice, l).await?.ok_or_else(refused)?)
            }
        };
        let scopes = Scopes::stored(ScopeContext::Patient, &token.scopes);
        Ok(FhirCaller::App(Box::new(AppCaller { practice, link, app, scopes, proxy })))
    }
}
