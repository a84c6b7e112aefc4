//! Sign-in through an OpenID Connect provider that behaves like NHS login: authorization code
//! with PKCE (S256), `private_key_jwt` client authentication, `vtr` requested, and the ID token
//! checked (signature against the provider's keys, issuer, audience, expiry, nonce) before its
//! `vot` (or `identity_proofing_level`) sets the account's identity level. The NHS number and date
//! of birth from the userinfo endpoint must match a patient registered at a practice here;
//! a mismatch is refused with a plain message. Record access needs P9; P5 gets appointments and
//! messages (R22).
//!
//! Configured with `CALDICOTT_OIDC_ISSUER`, `CALDICOTT_OIDC_CLIENT_ID`,
//! `CALDICOTT_OIDC_KEY_FILE` (the client's private key, PEM), `CALDICOTT_OIDC_REDIRECT_URI`, and
//! optionally `CALDICOTT_OIDC_KEY_ID`, `CALDICOTT_OIDC_KEY_ALG` (default RS512, as NHS login
//! requires) and `CALDICOTT_OIDC_SCOPE`.

use crate::patient_services::PatientPrincipal;
use crate::{new_id, App, AppError, AppResult};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use caldicott_core::access::{AccountKind, IdentityLevel, OnlineAccount};
use caldicott_core::audit::{Action, Actor, ActorKind, Outcome};
use caldicott_core::ids::AccountId;
use caldicott_core::NhsNumber;
use chrono::NaiveDate;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// What to ask for: every level NHS login can prove, so that P5 users can still book.
pub const VTR: &str = r#"["P9.Cp.Cd","P9.Cp.Ck","P9.Cm","P5.Cp.Cd","P5.Cp.Ck","P5.Cm"]"#;
const NOT_MATCHED: &str = "We could not match your NHS login to a patient registered at a practice that uses these \
     services. Check you are registered, or contact your GP practice.";

#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub key_pem: Vec<u8>,
    pub key_id: Option<String>,
    pub algorithm: Algorithm,
    /// The one algorithm ID tokens may be signed with (NHS login: RS512); a token signed any
    /// other way is refused, whatever its header says.
    pub id_token_algorithm: Algorithm,
    pub scope: String,
}

fn algorithm_named(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        _ => return None,
    })
}

impl OidcConfig {
    /// From the environment; `None` when NHS login is not configured.
    pub fn from_env() -> Option<Result<Self, String>> {
        let issuer = std::env::var("CALDICOTT_OIDC_ISSUER").ok().filter(|s| !s.is_empty())?;
        let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} must be set with CALDICOTT_OIDC_ISSUER"));
        let build = || -> Result<Self, String> {
            let key_file = var("CALDICOTT_OIDC_KEY_FILE")?;
            let key_pem = std::fs::read(&key_file).map_err(|e| format!("reading {key_file}: {e}"))?;
            let named = |var: &str| {
                let name = std::env::var(var).unwrap_or_else(|_| "RS512".into());
                algorithm_named(&name).ok_or_else(|| format!("{var} {name:?} is not supported"))
            };
            let algorithm = named("CALDICOTT_OIDC_KEY_ALG")?;
            let id_token_algorithm = named("CALDICOTT_OIDC_ID_TOKEN_ALG")?;
            Ok(Self {
                issuer: issuer.trim_end_matches('/').to_owned(),
                client_id: var("CALDICOTT_OIDC_CLIENT_ID")?,
                redirect_uri: var("CALDICOTT_OIDC_REDIRECT_URI")?,
                key_pem,
                key_id: std::env::var("CALDICOTT_OIDC_KEY_ID").ok(),
                algorithm,
                id_token_algorithm,
                scope: std::env::var("CALDICOTT_OIDC_SCOPE")
                    .unwrap_or_else(|_| "openid profile nhs_number birthdate".into()),
            })
        };
        Some(build())
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    jwks_uri: String,
}

/// The provider, discovered on first use.
pub struct NhsLogin {
    config: OidcConfig,
    key: EncodingKey,
    agent: ureq::Agent,
    discovered: OnceCell<(Discovery, JwkSet)>,
}

/// The redirect to the provider, and the value of the short-lived cookie that ties the answer
/// to this browser (state, nonce and PKCE verifier).
#[derive(Debug, Clone)]
pub struct AuthStart {
    pub redirect: String,
    pub cookie: String,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: String,
    access_token: String,
}

#[derive(Debug, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub vot: Option<String>,
    #[serde(default)]
    pub identity_proofing_level: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(default)]
    nhs_number: Option<String>,
    #[serde(default)]
    birthdate: Option<String>,
}

fn random(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The identity level an ID token proves: from `vot` ("P9.Cp.Cd"), else
/// `identity_proofing_level`; both present and different is refused.
pub fn identity_of(claims: &IdClaims) -> Result<IdentityLevel, String> {
    let from_vot = claims.vot.as_deref().and_then(|v| v.split('.').next()).map(str::to_owned);
    let from_ipl = claims.identity_proofing_level.clone();
    let level = match (from_vot, from_ipl) {
        (Some(a), Some(b)) if a != b => return Err(format!("the token's vot ({a}) and identity level ({b}) disagree")),
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err("the token does not say how the person's identity was checked (no vot)".into()),
    };
    IdentityLevel::parse(&level).ok_or_else(|| format!("unknown identity level {level:?}"))
}

fn bad_gateway(e: impl std::fmt::Display) -> AppError {
    AppError::Unavailable(format!("NHS login: {e}"))
}

impl NhsLogin {
    pub fn new(config: OidcConfig) -> Result<Self, String> {
        let key = match config.algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&config.key_pem),
            _ => EncodingKey::from_rsa_pem(&config.key_pem),
        }
        .map_err(|e| format!("the OIDC client key: {e}"))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self { config, key, agent, discovered: OnceCell::new() })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    async fn get_json<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        url: String,
        bearer: Option<String>,
    ) -> AppResult<T> {
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || {
            let mut req = agent.get(&url);
            if let Some(b) = bearer {
                req = req.header("Authorization", &format!("Bearer {b}"));
            }
            let mut res = req.call().map_err(bad_gateway)?;
            if !res.status().is_success() {
                return Err(bad_gateway(format!("{url} answered {}", res.status())));
            }
            res.body_mut().read_json::<T>().map_err(bad_gateway)
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
    }

    async fn provider(&self) -> AppResult<&(Discovery, JwkSet)> {
        self.discovered
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
                let d: Discovery = self.get_json(url, None).await?;
                if d.issuer.trim_end_matches('/') != self.config.issuer {
                    return Err(bad_gateway(format!(
                        "the provider says it is {}, not {}",
                        d.issuer, self.config.issuer
                    )));
                }
                let keys: JwkSet = self.get_json(d.jwks_uri.clone(), None).await?;
                Ok((d, keys))
            })
            .await
    }

    /// Where to send the browser, with a fresh state, nonce and PKCE verifier.
    pub async fn start(&self) -> AppResult<AuthStart> {
        let (d, _) = self.provider().await?;
        let (state, nonce, verifier) = (random(24), random(24), random(48));
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let c = &self.config;
        let redirect = format!(
            "{}?response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce={nonce}\
             &code_challenge={challenge}&code_challenge_method=S256&vtr={}&prompt=login",
            d.authorization_endpoint,
            encode(&c.client_id),
            encode(&c.redirect_uri),
            encode(&c.scope),
            encode(VTR),
        );
        Ok(AuthStart { redirect, cookie: format!("{state}.{nonce}.{verifier}") })
    }

    fn client_assertion(&self, audience: &str) -> AppResult<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": audience,
            "jti": new_id().to_string(),
            "iat": now,
            "exp": now + 300,
        });
        let mut header = Header::new(self.config.algorithm);
        header.kid = self.config.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| AppError::Internal(format!("client assertion: {e}")))
    }

    /// Exchanges the code, checks the ID token, and reads the person's NHS number and date of
    /// birth. Returns (subject, identity level, NHS number, date of birth).
    pub async fn finish(
        &self,
        cookie: &str,
        code: &str,
        state: &str,
    ) -> AppResult<(String, IdentityLevel, NhsNumber, NaiveDate)> {
        let expired =
            || AppError::BadRequest("Your sign-in took too long or was started elsewhere. Start again.".into());
        let mut parts = cookie.splitn(3, '.');
        let (Some(want_state), Some(nonce), Some(verifier)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(expired());
        };
        if want_state.is_empty() || !crate::constant_time_eq(want_state, state) {
            return Err(expired());
        }
        let (d, keys) = self.provider().await?;
        let assertion = self.client_assertion(&d.token_endpoint)?;
        let form = vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), self.config.redirect_uri.clone()),
            ("client_id".to_owned(), self.config.client_id.clone()),
            ("code_verifier".to_owned(), verifier.to_owned()),
            ("client_assertion_type".to_owned(), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned()),
            ("client_assertion".to_owned(), assertion),
        ];
        let agent = self.agent.clone();
        let token_endpoint = d.token_endpoint.clone();
        let tokens: TokenResponse = tokio::task::spawn_blocking(move || {
            let mut res = agent.post(&token_endpoint).send_form(form).map_err(bad_gateway)?;
            if !res.status().is_success() {
                let body = res.body_mut().read_to_string().unwrap_or_default();
                return Err(AppError::BadRequest(format!(
                    "NHS login did not accept the sign-in ({}). Start again. {}",
                    res.status(),
                    body.chars().take(200).collect::<String>()
                )));
            }
            res.body_mut().read_json::<TokenResponse>().map_err(bad_gateway)
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
        let claims = self.verify_id_token(&tokens.id_token, keys, nonce)?;
        let level = identity_of(&claims).map_err(AppError::BadRequest)?;
        let info: UserInfo = self.get_json(d.userinfo_endpoint.clone(), Some(tokens.access_token)).await?;
        if info.sub != claims.sub {
            return Err(AppError::BadRequest("NHS login returned details for someone else. Start again.".into()));
        }
        let nhs = info
            .nhs_number
            .as_deref()
            .and_then(|n| NhsNumber::parse(n).ok())
            .ok_or_else(|| AppError::BadRequest(NOT_MATCHED.into()))?;
        let dob = info
            .birthdate
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .ok_or_else(|| AppError::BadRequest(NOT_MATCHED.into()))?;
        Ok((claims.sub, level, nhs, dob))
    }

    /// Checks an ID token's signature, issuer, audience, expiry and nonce.
    pub fn verify_id_token(&self, token: &str, keys: &JwkSet, nonce: &str) -> AppResult<IdClaims> {
        self.verify_token(token, keys, &self.config.client_id, Some(nonce))
    }

    /// Checks an ID token issued to `audience` (caldicott, or an app that signs its users in
    /// with NHS login); the nonce too when there is one to check.
    fn verify_token(&self, token: &str, keys: &JwkSet, audience: &str, nonce: Option<&str>) -> AppResult<IdClaims> {
        let refused =
            |why: String| AppError::BadRequest(format!("The sign-in could not be checked ({why}). Start again."));
        let header = jsonwebtoken::decode_header(token).map_err(|e| refused(e.to_string()))?;
        // The algorithm is pinned by configuration, never taken from the token.
        let pinned = self.config.id_token_algorithm;
        if header.alg != pinned {
            return Err(refused(format!("signed with {:?}, not {pinned:?}", header.alg)));
        }
        // The key is the one the token names, and it must be published for that algorithm.
        let kid = header.kid.as_deref().ok_or_else(|| refused("no key id".into()))?;
        let jwk = keys.find(kid).ok_or_else(|| refused("unknown signing key".into()))?;
        if jwk.common.key_algorithm.is_some_and(|a| format!("{a:?}") != format!("{pinned:?}")) {
            return Err(refused("the key is published for another algorithm".into()));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| refused(e.to_string()))?;
        let mut v = Validation::new(pinned);
        v.set_issuer(&[self.config.issuer.as_str(), &format!("{}/", self.config.issuer)]);
        v.set_audience(&[audience]);
        v.leeway = 60;
        let data = jsonwebtoken::decode::<IdClaims>(token, &key, &v).map_err(|e| refused(e.to_string()))?;
        if let Some(nonce) = nonce {
            if data.claims.nonce.as_deref().is_none_or(|n| !crate::constant_time_eq(n, nonce)) {
                return Err(refused("nonce".into()));
            }
        }
        Ok(data.claims)
    }

    /// Who an app's user is, from the ID token NHS login issued to the app (`audience`) and the
    /// access token that reads their userinfo: (subject, identity level, NHS number, birth date,
    /// the nonce the token carries).
    pub async fn identify_for_app(
        &self,
        id_token: &str,
        access_token: &str,
        audience: &str,
    ) -> AppResult<(String, IdentityLevel, NhsNumber, NaiveDate, Option<String>)> {
        let (d, keys) = self.provider().await?;
        let claims = self.verify_token(id_token, keys, audience, None)?;
        let level = identity_of(&claims).map_err(AppError::BadRequest)?;
        let info: UserInfo = self.get_json(d.userinfo_endpoint.clone(), Some(access_token.to_owned())).await?;
        if info.sub != claims.sub {
            return Err(AppError::BadRequest("the access token is for someone else".into()));
        }
        let nhs = info.nhs_number.as_deref().and_then(|n| NhsNumber::parse(n).ok());
        let dob = info.birthdate.as_deref().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        match (nhs, dob) {
            (Some(n), Some(d)) => Ok((claims.sub, level, n, d, claims.nonce)),
            _ => Err(AppError::Forbidden(NOT_MATCHED.into())),
        }
    }
}

impl App {
    pub fn nhs_login(&self) -> Option<&Arc<NhsLogin>> {
        self.nhs_login.as_ref()
    }

    /// Signs in a person the provider has identified: their account at the practice where they
    /// are registered (made on first use), at the identity level the provider proved.
    pub async fn nhs_login_sign_in(
        &self,
        issuer: &str,
        subject: &str,
        level: IdentityLevel,
        nhs: &NhsNumber,
        dob: NaiveDate,
    ) -> AppResult<String> {
        let today = self.today();
        let mut found = None;
        for practice in self.store.practices().await? {
            if let Some(p) = self.store.patient_by_nhs_number(practice.id, nhs).await? {
                if p.registration_on(today).is_some() && !p.is_deceased_on(today) {
                    found = Some((practice, p));
                    break;
                }
            }
        }
        let Some((practice, patient)) = found else { return Err(AppError::Forbidden(NOT_MATCHED.into())) };
        let actor = |account: &str| Actor { kind: ActorKind::Patient, id: account.to_owned(), role: "patient".into() };
        if patient.date_of_birth != dob {
            let audit = self.patient_audit(
                actor(subject),
                Some(patient.id),
                Action::PatientSignInFailed,
                format!("patient/{}", patient.id),
                Outcome::Denied,
                "NHS login date of birth does not match the record",
            );
            self.audit.record(practice.id, audit).await?;
            return Err(AppError::Forbidden(
                "Your date of birth in NHS login does not match your GP record, so we cannot show your services. \
                 Contact your GP practice to check your details."
                    .into(),
            ));
        }
        let account = match self.store.oidc_account(practice.id, issuer, subject).await? {
            Some(a) if a.holder != patient.id => {
                return Err(AppError::Forbidden(
                    "This NHS login is linked to someone else here. Contact the practice.".into(),
                ))
            }
            Some(a) => {
                if a.identity != level {
                    let audit = self.patient_audit(
                        actor(&a.id.to_string()),
                        Some(patient.id),
                        Action::OnlineAccountCreate,
                        format!("account/{}", a.id),
                        Outcome::Success,
                        format!("identity level {} -> {}", a.identity.as_str(), level.as_str()),
                    );
                    self.store.set_account_identity(practice.id, a.id, level, &audit).await?;
                }
                OnlineAccount { identity: level, ..a }
            }
            None => {
                let account = OnlineAccount {
                    id: AccountId::from_uuid(new_id()),
                    holder: patient.id,
                    kind: AccountKind::NhsLogin,
                    identity: level,
                    created_at: self.now(),
                };
                let audit = self.patient_audit(
                    actor(&account.id.to_string()),
                    Some(patient.id),
                    Action::OnlineAccountCreate,
                    format!("account/{}", account.id),
                    Outcome::Success,
                    format!("NHS login account, identity {}", level.as_str()),
                );
                self.store.create_oidc_account(practice.id, &account, issuer, subject, &audit).await?;
                account
            }
        };
        let who = PatientPrincipal::of(practice.id, &account, &patient);
        self.start_patient_session(&practice, &who).await
    }
}
