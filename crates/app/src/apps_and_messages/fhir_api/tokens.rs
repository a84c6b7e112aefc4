//! The token endpoint and bearer tokens of the FHIR API.
//!
//! - `grant_type=refresh_token`: a linked app (its client id and secret by HTTP Basic) swaps its
//!   link credential for a 15-minute access token with `patient/` scopes, for the link's holder
//!   or, with `patient=<id>`, for someone the holder acts for as a proxy.
//! - `grant_type=client_credentials` with a signed client assertion (SMART Backend Services,
//!   `private_key_jwt`): a practice integration gets a 5-minute token with `system/` scopes, for
//!   its own practice only. Each assertion is good once.
//! - `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693) with a signed client
//!   assertion: an app registered with a key for it (NHS England's API platform, for the NHS
//!   App) exchanges its user's NHS login ID token for a 15-minute access token for that person
//!   (P9 only, R22; registered here), or for someone they act for as a proxy. The first
//!   exchange for a person links the app to them, with the "online services linked" task (R23).
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
use caldicott_core::audit::{Action, Outcome};
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
/// How far a client assertion's times may be off the server's clock.
const ASSERTION_LEEWAY: Duration = Duration::seconds(60);
/// The grant type of a token exchange (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The one subject token type exchanged: an OpenID Connect ID token (RFC 8693 §3).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The kind of token an exchange issues (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// What a token-exchange client's assertion may be signed with: the integrations' algorithms
/// and RS512, which NHS England's API platform signs with.
const EXCHANGE_ALGORITHMS: [jsonwebtoken::Algorithm; 5] = [
    jsonwebtoken::Algorithm::RS512,
    jsonwebtoken::Algorithm::RS384,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::ES256,
];

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
    /// The client's id in the body (token exchange; else the assertion's `iss` names it).
    pub client_id: String,
    /// Token exchange (RFC 8693): the NHS login ID token, its type, its issuer, and the kind of
    /// token asked for.
    pub subject_token: String,
    pub subject_token_type: String,
    pub subject_issuer: String,
    pub requested_token_type: String,
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
    /// Token exchange (RFC 8693 §2.2.1): the kind of token issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
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

/// The answer that gives an app its access token (`fat_`, the practice's id, the secret).
fn app_token_response(
    practice: PracticeId,
    secret: &str,
    scope: String,
    patient: PatientId,
    issued_token_type: Option<&'static str>,
) -> TokenResponse {
    TokenResponse {
        access_token: format!("{APP_PREFIX}{}{secret}", practice.as_uuid().simple()),
        token_type: "Bearer",
        expires_in: ACCESS_LIFETIME.num_seconds(),
        scope,
        patient: Some(patient.to_string()),
        issued_token_type,
    }
}

impl App {
    /// The token endpoint.
    pub async fn fhir_token(&self, r: &TokenRequest) -> Result<TokenResponse, TokenError> {
        match r.grant_type.as_str() {
            "refresh_token" => self.app_token(r).await,
            "client_credentials" => self.system_token(r).await,
            TOKEN_EXCHANGE => self.exchanged_token(r).await,
            _ => Err(oauth(
                "unsupported_grant_type",
                format!(
                    "grant_type must be refresh_token (an app, with its link's token), client_credentials (a practice \
                     integration, with a client assertion) or {TOKEN_EXCHANGE} (an app exchanging its user's NHS \
                     login ID token, with a client assertion)"
                ),
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
                Some(self.live_proxy_link_to(practice, link.patient, asked).await?.ok_or_else(not_theirs)?)
            }
        };
        let (secret, token, patient, detail) = self.access_token_on(&link, proxy.as_ref(), &scopes, "");
        let audit = self.patient_audit(
            crate::apps::app_actor(&app),
            Some(patient),
            Action::FhirTokenIssue,
            format!("app_link/{}", link.id),
            Outcome::Success,
            detail,
        );
        self.store.create_fhir_token(practice, &token, &audit).await?;
        Ok(app_token_response(practice, &secret, token.scopes, patient, None))
    }

    /// A new app access token on `link` (for the person `proxy` names, when there is one): its
    /// secret, the token as kept, the patient it reads and its audit detail (`how`, after the
    /// scopes).
    fn access_token_on(
        &self,
        link: &caldicott_core::online::AppLink,
        proxy: Option<&caldicott_core::access::ProxyLink>,
        scopes: &Scopes,
        how: &str,
    ) -> (String, FhirToken, PatientId, String) {
        let secret = random_secret();
        let now = self.now();
        let token = FhirToken {
            hash: sha256(&secret),
            link: link.id,
            proxy_link: proxy.map(|p| p.id),
            scopes: scopes.as_string(),
            issued_at: now,
            expires_at: now + ACCESS_LIFETIME,
        };
        let patient = proxy.map_or(link.patient, |p| p.patient);
        let detail = match proxy {
            None => format!("scope={}{how}", token.scopes),
            Some(p) => format!("scope={}{how} proxy_link={}", token.scopes, p.id),
        };
        (secret, token, patient, detail)
    }

    /// A live proxy link of `proxy`'s to `patient`, if they hold one.
    async fn live_proxy_link_to(
        &self,
        practice: PracticeId,
        proxy: PatientId,
        patient: PatientId,
    ) -> AppResult<Option<caldicott_core::access::ProxyLink>> {
        for l in self.store.proxy_links_for_proxy(practice, proxy).await? {
            if l.patient == patient {
                if let Some(live) = self.live_proxy_link(practice, l).await? {
                    return Ok(Some(live));
                }
            }
        }
        Ok(None)
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
        let (jti, exp) = match self.checked_assertion(
            &r.client_assertion,
            &integration.client_id,
            &integration.public_key,
            &ALGORITHMS,
        ) {
            Ok(used) => used,
            Err((why, err)) => return denied(why, err).await,
        };
        let now = self.now();
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
        let used = AssertionUse { jti, expires_at: exp + ASSERTION_LEEWAY };
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
            issued_token_type: None,
        })
    }

    /// Lets a registered app exchange its users' NHS login ID tokens for access tokens (token
    /// exchange, RFC 8693; NHS England's API platform for the NHS App): the app's client id at
    /// NHS login (the ID tokens' audience) and the public key its client assertions are signed
    /// with. An empty key stops it (the app's links and NHS login client id are kept).
    /// Administrators only; audited.
    pub async fn set_app_token_exchange(
        &self,
        who: &crate::StaffPrincipal,
        id: &str,
        nhs_login_client_id: &str,
        public_key: &str,
    ) -> AppResult<()> {
        crate::permit(who, caldicott_core::permissions::Permission::ManageAppsAndIntegrations)?;
        let unknown = || AppError::NotFound("no such app".into());
        let id = id.parse::<AppId>().map_err(|_| unknown())?;
        let app = self.store.apps(who.practice).await?.into_iter().find(|a| a.id == id).ok_or_else(unknown)?;
        let (audience, key) = (nhs_login_client_id.trim(), public_key.trim());
        if audience.len() > 200 || audience.chars().any(char::is_whitespace) {
            return Err(AppError::BadRequest("Enter the app's client id at NHS login as NHS login gave it".into()));
        }
        let detail = if key.is_empty() {
            "token exchange stopped".to_owned()
        } else {
            if audience.is_empty() && app.nhs_login_client_id.is_none() {
                return Err(AppError::BadRequest(
                    "Enter the app's client id at NHS login: the ID tokens it exchanges are issued to it".into(),
                ));
            }
            if key.len() > 20_000 {
                return Err(AppError::BadRequest("Give the app's public key, in PEM or as a JWK Set".into()));
            }
            decoding_keys(key)?;
            format!(
                "token exchange allowed for NHS login client {}",
                if audience.is_empty() { app.nhs_login_client_id.as_deref().unwrap_or_default() } else { audience }
            )
        };
        let audit = self.audit_record(who, None, Action::AppChange, format!("app/{id}"), Outcome::Success, detail);
        let audience = Some(audience).filter(|a| !a.is_empty() && !key.is_empty());
        let key = Some(key).filter(|k| !k.is_empty());
        self.store.set_app_exchange_key(who.practice, id, (audience, key), &audit).await.map_err(|e| match e {
            StoreError::NotFound(_) => unknown(),
            other => other.into(),
        })
    }

    /// A client assertion checked with the client's registered key (`key`, PEM or JWK Set):
    /// signed with one of `algorithms` by a key of it, issued by and about `client_id`, for this
    /// token endpoint at its configured public URL (never one built from the request's Host
    /// header), current by the server's clock, lasting at most five minutes, with an id. The
    /// assertion's id and expiry, or why not (for the audit) and the answer.
    fn checked_assertion(
        &self,
        assertion: &str,
        client_id: &str,
        key: &str,
        algorithms: &[jsonwebtoken::Algorithm],
    ) -> Result<(String, DateTime<Utc>), (&'static str, TokenError)> {
        let refused = || oauth("invalid_client", "the client assertion is not right");
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| ("not a signed JWT", refused()))?;
        if !algorithms.contains(&header.alg) {
            return Err(("signed with an algorithm not accepted", refused()));
        }
        let keys = decoding_keys(key).map_err(|_| ("its registered key cannot be read", refused()))?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.validate_exp = false; // checked below against the server's clock
        validation.set_required_spec_claims(&["iss", "sub", "aud", "exp", "jti"]);
        validation.set_audience(&[self.fhir_token_url()]);
        validation.set_issuer(&[client_id]);
        let claims = keys
            .iter()
            .filter(|(kid, k)| {
                (header.kid.is_none() || kid.is_none() || *kid == header.kid) && k.family() == header.alg.family()
            })
            .find_map(|(_, k)| jsonwebtoken::decode::<AssertionClaims>(assertion, k, &validation).ok())
            .map(|d| d.claims)
            .ok_or_else(|| ("signature, audience or issuer not right", refused()))?;
        let now = self.now();
        let exp = DateTime::<Utc>::from_timestamp(claims.exp, 0).ok_or_else(|| ("no usable expiry", refused()))?;
        if claims.sub != claims.iss
            || exp + ASSERTION_LEEWAY < now
            || exp > now + ASSERTION_MAX_LIFETIME + ASSERTION_LEEWAY
            || claims
                .nbf
                .and_then(|n| DateTime::<Utc>::from_timestamp(n, 0))
                .is_some_and(|n| n > now + ASSERTION_LEEWAY)
            || claims.jti.trim().is_empty()
            || claims.jti.len() > 200
        {
            return Err((
                "expired, too long-lived, or without sub or jti",
                oauth(
                    "invalid_client",
                    "the client assertion must be current, last at most five minutes, name the client as iss and \
                     sub, and carry a jti",
                ),
            ));
        }
        Ok((claims.jti, exp))
    }

    /// Token exchange (RFC 8693): an app registered with a key for it sends its user's NHS login
    /// ID token and a client assertion; the answer is an access token for that person (P9 and
    /// registered here) or for someone they act for (`patient`: that person's NHS number, under
    /// a live proxy link of theirs). The first exchange for a person links the app to them, with
    /// the "online services linked" task (R23). Each assertion is good once; every refusal after
    /// the app is known is audited at its practice.
    async fn exchanged_token(&self, r: &TokenRequest) -> Result<TokenResponse, TokenError> {
        let refused = || oauth("invalid_client", "the client assertion is not right");
        // The client: the client_id sent, else the one the assertion names (read unchecked, only
        // to find the key: nothing of it is believed until the key checks it).
        #[derive(serde::Deserialize)]
        struct Named {
            #[serde(default)]
            iss: Option<String>,
        }
        let named =
            jsonwebtoken::dangerous::insecure_decode_claims::<Named>(&r.client_assertion).ok().and_then(|n| n.iss);
        let client_id = match (r.client_id.trim(), named.as_deref()) {
            ("", Some(iss)) => iss.to_owned(),
            ("", None) => {
                return Err(oauth(
                    "invalid_client",
                    format!("send client_id, client_assertion_type={ASSERTION_TYPE} and a client_assertion signed with the app's key"),
                ))
            }
            (id, _) => id.to_owned(),
        };
        let Some((practice, app)) = self.store.app_by_client_id(&client_id).await? else {
            self.credential_refused(None, Action::FhirTokenIssue, format!("client/{client_id}"), "unknown client id")
                .await?;
            return Err(refused());
        };
        // From here the app is known: every refusal is audited at its practice, as the app.
        let actor = crate::apps::app_actor(&app);
        let denied = |why: String, err: TokenError| {
            let (actor, entity) = (actor.clone(), format!("app/{}", app.id));
            async move {
                self.credential_refused(Some((practice, actor)), Action::FhirTokenIssue, entity, &why).await?;
                Err::<TokenResponse, TokenError>(err)
            }
        };
        if r.client_assertion_type != ASSERTION_TYPE || r.client_assertion.is_empty() {
            let err = oauth(
                "invalid_client",
                format!("send client_assertion_type={ASSERTION_TYPE} and a client_assertion signed with the app's key"),
            );
            return denied("no client assertion".into(), err).await;
        }
        if named.as_deref().is_some_and(|iss| iss != client_id) {
            let err = oauth("invalid_client", "client_id and the client assertion's iss differ");
            return denied("the assertion names another client".into(), err).await;
        }
        let (Some(key), Some(audience)) = (app.exchange_key.as_deref(), app.nhs_login_client_id.as_deref()) else {
            let err = oauth("unauthorized_client", "this app is not registered here to exchange NHS login ID tokens");
            return denied("not registered for token exchange".into(), err).await;
        };
        if !app.active {
            return denied("the app is turned off".into(), refused()).await;
        }
        let (jti, exp) = match self.checked_assertion(&r.client_assertion, &app.client_id, key, &EXCHANGE_ALGORITHMS) {
            Ok(used) => used,
            Err((why, err)) => return denied(why.into(), err).await,
        };
        if r.subject_token_type != ID_TOKEN_TYPE || r.subject_token.is_empty() {
            let err = oauth(
                "invalid_request",
                format!("send the NHS login ID token as subject_token, with subject_token_type={ID_TOKEN_TYPE}"),
            );
            return denied("no ID token".into(), err).await;
        }
        if !r.requested_token_type.is_empty() && r.requested_token_type != ACCESS_TOKEN_TYPE {
            let err = oauth("invalid_request", format!("only an access token is issued ({ACCESS_TOKEN_TYPE})"));
            return denied("asked for another kind of token".into(), err).await;
        }
        let Some(provider) = self.nhs_login().cloned() else {
            return denied(
                "NHS login is not set up here".into(),
                oauth("invalid_grant", "NHS login is not set up here"),
            )
            .await;
        };
        if !r.subject_issuer.is_empty()
            && r.subject_issuer.trim_end_matches('/') != provider.issuer().trim_end_matches('/')
        {
            let err = oauth("invalid_grant", "the ID token's issuer is not the NHS login this service trusts");
            return denied("another issuer".into(), err).await;
        }
        let (_, level, nhs, dob) = match provider.identify_exchanged(&r.subject_token, audience).await {
            Ok(who) => who,
            Err(AppError::BadRequest(m) | AppError::Forbidden(m)) => {
                return denied("the ID token was refused".into(), oauth("invalid_grant", m)).await
            }
            Err(e) => return Err(e.into()),
        };
        // R22: NHS-login-derived access to the record only at P9.
        if level != caldicott_core::access::IdentityLevel::P9 {
            let err = oauth(
                "invalid_grant",
                "access to the GP record through NHS login needs a fully verified identity (P9)",
            );
            return denied(format!("identity {level:?}, not P9"), err).await;
        }
        let not_matched =
            || oauth("invalid_grant", "this NHS login does not match a patient registered at the practice");
        let holder = match self.store.patient_by_nhs_number(practice, &nhs).await? {
            Some(p) if p.date_of_birth == dob && p.registration_on(self.today()).is_some() => p,
            _ => {
                return denied("no registered patient with that NHS number and date of birth".into(), not_matched())
                    .await
            }
        };
        let scopes = match Scopes::parse(&r.scope) {
            Ok(s) => s,
            Err(e) => return denied("a scope not offered".into(), oauth("invalid_scope", e.to_string())).await,
        };
        // For someone else: that person's NHS number, and a live proxy link of the holder's to them.
        let proxy = match r.patient.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) if n == holder.nhs_number.as_str() => None,
            Some(n) => {
                let not_theirs =
                    || oauth("invalid_grant", "the signed-in person does not act for that patient online here");
                let asked = match caldicott_core::nhs_number::NhsNumber::parse(n) {
                    Ok(asked) => self.store.patient_by_nhs_number(practice, &asked).await?,
                    Err(_) => None,
                };
                let live = match asked {
                    Some(asked) => self.live_proxy_link_to(practice, holder.id, asked.id).await?,
                    None => None,
                };
                match live {
                    Some(l) => Some(l),
                    None => return denied("no live proxy link to the patient asked for".into(), not_theirs()).await,
                }
            }
        };
        let (link, task, link_audit, _) =
            self.new_link_parts(&app, &holder, caldicott_core::online::LinkVia::NhsLogin, None);
        let (secret, token, patient, detail) = self.access_token_on(&link, proxy.as_ref(), &scopes, " token exchange");
        let audit = self.patient_audit(
            actor.clone(),
            Some(patient),
            Action::FhirTokenIssue,
            format!("app/{}", app.id),
            Outcome::Success,
            detail,
        );
        let used = AssertionUse { jti, expires_at: exp + ASSERTION_LEEWAY };
        match self
            .store
            .exchange_fhir_token(practice, (app.id, &used), (&link, &task, &link_audit), &token, &audit)
            .await
        {
            Err(StoreError::Conflict(_)) => {
                let err = oauth("invalid_grant", "this client assertion was used before: make a new one each time");
                return denied("client assertion used before".into(), err).await;
            }
            other => other?,
        };
        Ok(app_token_response(practice, &secret, token.scopes, patient, Some(ACCESS_TOKEN_TYPE)))
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
