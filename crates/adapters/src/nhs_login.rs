//! Sign-in through an OpenID Connect provider that behaves like NHS login: authorization code
//! with PKCE (S256), `private_key_jwt` client authentication, `vtr` requested, and the ID token
//! checked (signature against the provider's keys, issuer, audience, expiry, nonce) before its
//! `vot` (or `identity_proofing_level`) sets the account's identity level. The NHS number and date
//! of birth from the userinfo endpoint must match a patient registered at a practice here;
//! a mismatch is refused with a plain message. Record access needs P9; P5 gets appointments and
//! messages (R22). The protocol is the `openidconnect` crate's; caldicott adds `private_key_jwt`,
//! the HTTP client, a required and published key id, a pinned algorithm, and fetching the
//! provider's keys again when it rotates them.
//!
//! Configured with `CALDICOTT_OIDC_ISSUER`, `CALDICOTT_OIDC_CLIENT_ID`,
//! `CALDICOTT_OIDC_KEY_FILE` (the client's private key, PEM), `CALDICOTT_OIDC_REDIRECT_URI`, and
//! optionally `CALDICOTT_OIDC_KEY_ID`, `CALDICOTT_OIDC_KEY_ALG` (default RS512, as NHS login
//! requires) and `CALDICOTT_OIDC_SCOPE`.

use caldicott_app::nhs_login::{AuthStart, Identified, IdentifiedForApp, IdentityProvider, NOT_MATCHED};
use caldicott_app::{constant_time_eq, new_id, AppError, AppResult};
use caldicott_core::access::IdentityLevel;
use caldicott_core::NhsNumber;
use chrono::NaiveDate;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AsyncHttpClient, AuthType, AuthorizationCode, Client, ClientId, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IdToken,
    IdTokenFields, IdTokenVerifier, IssuerUrl, JsonWebKey, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, StandardErrorResponse, StandardTokenResponse,
    SubjectIdentifier, UserInfoClaims, UserInfoError,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, RwLock};

/// The provider's published signing keys.
pub use openidconnect::core::CoreJsonWebKeySet as ProviderKeys;

/// What to ask for: every level NHS login can prove, so that P5 users can still book.
pub const VTR: &str = r#"["P9.Cp.Cd","P9.Cp.Ck","P9.Cm","P5.Cp.Cd","P5.Cp.Ck","P5.Cm"]"#;
/// How often, at most, an ID token signed with a key not yet seen makes caldicott fetch the
/// provider's keys again (NHS login rotates its signing keys).
const KEYS_REFRESH_AFTER: Duration = Duration::from_secs(300);

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

/// The same algorithm, as the OpenID Connect client names it.
fn jws_algorithm(a: Algorithm) -> Result<CoreJwsSigningAlgorithm, String> {
    Ok(match a {
        Algorithm::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Algorithm::RS512 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
        Algorithm::PS256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        Algorithm::PS512 => CoreJwsSigningAlgorithm::RsaSsaPssSha512,
        Algorithm::ES256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        other => return Err(format!("{other:?} is not supported for ID tokens")),
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

/// The claims NHS login adds to the standard ones: how the person's identity was proved (in
/// the ID token) and their NHS number (from userinfo).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NhsClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_proofing_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
}
impl AdditionalClaims for NhsClaims {}

type NhsIdToken = IdToken<NhsClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type NhsTokenResponse = StandardTokenResponse<
    IdTokenFields<
        NhsClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
/// The provider as discovered: authorization endpoint known, token and userinfo endpoints as
/// the provider published them.
type NhsClient = Client<
    NhsClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    NhsTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The HTTP client the OpenID Connect client calls: ureq on the blocking pool, no redirects
/// followed (a redirect could send a request somewhere the provider did not publish), a
/// 10-second limit and a 1 MiB answer at most.
#[derive(Clone)]
struct Http(ureq::Agent);

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, std::io::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let agent = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut res = agent.run(request).map_err(std::io::Error::other)?;
                let body = res.body_mut().with_config().limit(1 << 20).read_to_vec().map_err(std::io::Error::other)?;
                let (parts, _) = res.into_parts();
                Ok(HttpResponse::from_parts(parts, body))
            })
            .await
            .map_err(std::io::Error::other)?
        })
    }
}

/// What discovery found: the client, and the signing keys with when they were fetched.
struct Provider {
    client: NhsClient,
    jwks_uri: openidconnect::JsonWebKeySetUrl,
    keys: RwLock<(ProviderKeys, Instant)>,
}

/// The provider, discovered on first use.
pub struct NhsLogin {
    config: OidcConfig,
    key: EncodingKey,
    pinned: CoreJwsSigningAlgorithm,
    http: Http,
    discovered: OnceCell<Provider>,
    keys_refresh_after: Duration,
}

/// The checked claims of an ID token that caldicott uses.
#[derive(Debug)]
pub struct IdClaims {
    pub sub: String,
    pub nonce: Option<String>,
    pub vot: Option<String>,
    pub identity_proofing_level: Option<String>,
    /// The person's NHS number and date of birth, when the ID token carries them (it does when
    /// the app asked NHS login for the `nhs_number` and `birthdate` scopes).
    pub nhs_number: Option<String>,
    pub birthdate: Option<String>,
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

fn refused(why: impl std::fmt::Display) -> AppError {
    AppError::BadRequest(format!("The sign-in could not be checked ({why}). Start again."))
}

/// What a person's userinfo says: (NHS number, date of birth), each when it is well formed.
fn person_of(info: &UserInfoClaims<NhsClaims, CoreGenderClaim>) -> (Option<NhsNumber>, Option<NaiveDate>) {
    let nhs = info.additional_claims().nhs_number.as_deref().and_then(|n| NhsNumber::parse(n).ok());
    let born = info.birthdate().and_then(|d| NaiveDate::parse_from_str(d.as_str(), "%Y-%m-%d").ok());
    (nhs, born)
}

impl NhsLogin {
    pub fn new(config: OidcConfig) -> Result<Self, String> {
        let key = match config.algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&config.key_pem),
            _ => EncodingKey::from_rsa_pem(&config.key_pem),
        }
        .map_err(|e| format!("the OIDC client key: {e}"))?;
        let pinned = jws_algorithm(config.id_token_algorithm)?;
        IssuerUrl::new(config.issuer.clone()).map_err(|e| format!("the OIDC issuer: {e}"))?;
        RedirectUrl::new(config.redirect_uri.clone()).map_err(|e| format!("the OIDC redirect URI: {e}"))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(Self {
            config,
            key,
            pinned,
            http: Http(agent),
            discovered: OnceCell::new(),
            keys_refresh_after: KEYS_REFRESH_AFTER,
        })
    }

    /// How long after fetching the provider's keys a token naming an unknown key may make
    /// caldicott fetch them again (five minutes unless set; tests set it to zero).
    pub fn with_keys_refresh_after(mut self, after: Duration) -> Self {
        self.keys_refresh_after = after;
        self
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    fn issuer_url(&self) -> AppResult<IssuerUrl> {
        IssuerUrl::new(self.config.issuer.clone()).map_err(|e| AppError::Internal(e.to_string()))
    }

    /// Discovery (the provider's metadata and keys), once; a failure is tried again next time.
    async fn provider(&self) -> AppResult<&Provider> {
        self.discovered
            .get_or_try_init(|| async {
                let metadata = CoreProviderMetadata::discover_async(self.issuer_url()?, &self.http)
                    .await
                    .map_err(|e| bad_gateway(format!("discovery: {e}")))?;
                let jwks_uri = metadata.jwks_uri().clone();
                let keys = metadata.jwks().clone();
                let redirect = RedirectUrl::new(self.config.redirect_uri.clone())
                    .map_err(|e| AppError::Internal(e.to_string()))?;
                let client =
                    NhsClient::from_provider_metadata(metadata, ClientId::new(self.config.client_id.clone()), None)
                        .set_redirect_uri(redirect)
                        // The client authenticates with a signed assertion (private_key_jwt), sent
                        // in the body beside its id; it has no secret.
                        .set_auth_type(AuthType::RequestBody);
                Ok(Provider { client, jwks_uri, keys: RwLock::new((keys, Instant::now())) })
            })
            .await
    }

    /// Where to send the browser, with a fresh state, nonce and PKCE verifier.
    pub async fn start(&self) -> AppResult<AuthStart> {
        let provider = self.provider().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(48);
        let mut request = provider
            .client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge)
            .add_extra_param("vtr", VTR)
            .add_prompt(CoreAuthPrompt::Login);
        for scope in self.config.scope.split_whitespace().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        let (url, state, nonce) = request.url();
        Ok(AuthStart {
            redirect: url.to_string(),
            cookie: format!("{}.{}.{}", state.secret(), nonce.secret(), verifier.secret()),
        })
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
    pub async fn finish(&self, cookie: &str, code: &str, state: &str) -> AppResult<Identified> {
        let expired =
            || AppError::BadRequest("Your sign-in took too long or was started elsewhere. Start again.".into());
        let mut parts = cookie.splitn(3, '.');
        let (Some(want_state), Some(nonce), Some(verifier)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(expired());
        };
        if want_state.is_empty() || !constant_time_eq(want_state, state) {
            return Err(expired());
        }
        let provider = self.provider().await?;
        let token_url = provider.client.token_uri().ok_or_else(|| bad_gateway("the provider has no token endpoint"))?;
        let assertion = self.client_assertion(token_url.as_str())?;
        let tokens = provider
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(bad_gateway)?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .add_extra_param("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            .add_extra_param("client_assertion", assertion)
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    AppError::BadRequest(format!("NHS login did not accept the sign-in ({}). Start again.", r.error()))
                }
                other => bad_gateway(other),
            })?;
        let id_token = tokens.extra_fields().id_token().ok_or_else(|| refused("no ID token"))?;
        let claims = self.checked(provider, id_token, &self.config.client_id, Some(nonce)).await?;
        let level = identity_of(&claims).map_err(AppError::BadRequest)?;
        let info = self.user_info(provider, tokens.access_token().clone(), &claims.sub).await.map_err(|e| match e {
            AppError::BadRequest(_) => {
                AppError::BadRequest("NHS login returned details for someone else. Start again.".into())
            }
            other => other,
        })?;
        match person_of(&info) {
            (Some(nhs), Some(dob)) => Ok((claims.sub, level, nhs, dob)),
            _ => Err(AppError::BadRequest(NOT_MATCHED.into())),
        }
    }

    /// The person's userinfo, which must be about `subject`.
    async fn user_info(
        &self,
        provider: &Provider,
        access_token: AccessToken,
        subject: &str,
    ) -> AppResult<UserInfoClaims<NhsClaims, CoreGenderClaim>> {
        provider
            .client
            .user_info(access_token, Some(SubjectIdentifier::new(subject.to_owned())))
            .map_err(bad_gateway)?
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                UserInfoError::ClaimsVerification(e) => {
                    AppError::BadRequest(format!("the access token is for someone else ({e})"))
                }
                other => bad_gateway(other),
            })
    }

    /// Checks an ID token's signature, issuer, audience, expiry and nonce against `keys`.
    pub fn verify_id_token(&self, token: &str, keys: &ProviderKeys, nonce: &str) -> AppResult<IdClaims> {
        let token: NhsIdToken = token.parse().map_err(|e| refused(format!("not an ID token: {e}")))?;
        self.verify_with(&token, keys, &self.config.client_id, Some(nonce))
    }

    /// Checks `token` against the provider's keys, fetching them again (at most every five
    /// minutes) when it names a key not seen yet.
    async fn checked(
        &self,
        provider: &Provider,
        token: &NhsIdToken,
        audience: &str,
        nonce: Option<&str>,
    ) -> AppResult<IdClaims> {
        let kid = Self::key_id(token)?;
        let stale = {
            let keys = provider.keys.read().await;
            let known = keys.0.keys().iter().any(|k| k.key_id().is_some_and(|id| **id == kid));
            !known && keys.1.elapsed() >= self.keys_refresh_after
        };
        if stale {
            let fresh = ProviderKeys::fetch_async(&provider.jwks_uri, &self.http).await.map_err(bad_gateway)?;
            *provider.keys.write().await = (fresh, Instant::now());
        }
        let keys = provider.keys.read().await;
        self.verify_with(token, &keys.0, audience, nonce)
    }

    /// The key id an ID token names; a token that names none is refused (no falling back to
    /// whichever key the provider published first).
    fn key_id(token: &NhsIdToken) -> AppResult<String> {
        let header = jsonwebtoken::decode_header(token.to_string()).map_err(refused)?;
        header.kid.ok_or_else(|| refused("no key id"))
    }

    /// Checks an ID token issued to `audience` (caldicott, or an app that signs its users in
    /// with NHS login); the nonce too when there is one to check. The algorithm is pinned by
    /// configuration, never taken from the token, and the key is the one the token names.
    fn verify_with(
        &self,
        token: &NhsIdToken,
        keys: &ProviderKeys,
        audience: &str,
        nonce: Option<&str>,
    ) -> AppResult<IdClaims> {
        let kid = Self::key_id(token)?;
        if !keys.keys().iter().any(|k| k.key_id().is_some_and(|id| **id == kid)) {
            return Err(refused("unknown signing key"));
        }
        let verifier =
            IdTokenVerifier::new_public_client(ClientId::new(audience.to_owned()), self.issuer_url()?, keys.clone())
                .set_allowed_algs([self.pinned.clone()]);
        let claims = match nonce {
            Some(n) => token.claims(&verifier, &Nonce::new(n.to_owned())),
            // App linking checks the nonce itself, as a one-use value it issued.
            None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(refused)?;
        let extra = claims.additional_claims();
        Ok(IdClaims {
            sub: claims.subject().to_string(),
            nonce: claims.nonce().map(|n| n.secret().clone()),
            vot: extra.vot.clone(),
            identity_proofing_level: extra.identity_proofing_level.clone(),
            nhs_number: extra.nhs_number.clone(),
            birthdate: claims.birthdate().map(|d| d.as_str().to_owned()),
        })
    }

    /// Who an app's user is, from the ID token NHS login issued to the app (`audience`) and the
    /// access token that reads their userinfo: (subject, identity level, NHS number, birth date,
    /// the nonce the token carries).
    pub async fn identify_for_app(
        &self,
        id_token: &str,
        access_token: &str,
        audience: &str,
    ) -> AppResult<IdentifiedForApp> {
        let provider = self.provider().await?;
        let token: NhsIdToken = id_token.parse().map_err(|e| refused(format!("not an ID token: {e}")))?;
        let claims = self.checked(provider, &token, audience, None).await?;
        let level = identity_of(&claims).map_err(AppError::BadRequest)?;
        let info = self.user_info(provider, AccessToken::new(access_token.to_owned()), &claims.sub).await?;
        match person_of(&info) {
            (Some(n), Some(d)) => Ok((claims.sub, level, n, d, claims.nonce)),
            _ => Err(AppError::Forbidden(NOT_MATCHED.into())),
        }
    }

    /// Who the user is from the ID token NHS login issued to an app (`audience`) alone, as a
    /// token exchange (RFC 8693) sends it: (subject, identity level, NHS number, birth date),
    /// the last two from the token's own claims.
    pub async fn identify_exchanged(&self, id_token: &str, audience: &str) -> AppResult<Identified> {
        let provider = self.provider().await?;
        let token: NhsIdToken = id_token.parse().map_err(|e| refused(format!("not an ID token: {e}")))?;
        let claims = self.checked(provider, &token, audience, None).await?;
        let level = identity_of(&claims).map_err(AppError::BadRequest)?;
        let nhs = claims.nhs_number.as_deref().and_then(|n| NhsNumber::parse(n).ok());
        let born = claims.birthdate.as_deref().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        match (nhs, born) {
            (Some(n), Some(d)) => Ok((claims.sub, level, n, d)),
            _ => Err(AppError::BadRequest(
                "the ID token carries no NHS number or date of birth (ask NHS login for the nhs_number and birthdate \
                 scopes)"
                    .into(),
            )),
        }
    }
}

#[async_trait::async_trait]
impl IdentityProvider for NhsLogin {
    fn issuer(&self) -> &str {
        NhsLogin::issuer(self)
    }

    async fn start(&self) -> AppResult<AuthStart> {
        NhsLogin::start(self).await
    }

    async fn finish(&self, cookie: &str, code: &str, state: &str) -> AppResult<Identified> {
        NhsLogin::finish(self, cookie, code, state).await
    }

    async fn identify_for_app(
        &self,
        id_token: &str,
        access_token: &str,
        audience: &str,
    ) -> AppResult<IdentifiedForApp> {
        NhsLogin::identify_for_app(self, id_token, access_token, audience).await
    }

    async fn identify_exchanged(&self, id_token: &str, audience: &str) -> AppResult<Identified> {
        NhsLogin::identify_exchanged(self, id_token, audience).await
    }
}
