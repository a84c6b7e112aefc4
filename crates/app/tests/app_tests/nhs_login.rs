#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The checks made on an NHS-login ID token, with tokens signed by a test provider key (the
//! whole flow against a real OpenID Connect provider runs in the browser tests).

use caldicott_adapters::nhs_login::{identity_of, IdClaims, NhsLogin, OidcConfig, ProviderKeys};
use caldicott_core::access::IdentityLevel;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const PROVIDER_KEY: &[u8] = include_bytes!("fixtures/test-oidc-provider-key.pem");
const PROVIDER_JWKS: &str = include_str!("fixtures/test-oidc-provider-jwks.json");

fn login() -> NhsLogin {
    NhsLogin::new(OidcConfig {
        issuer: "https://auth.example.nhs".into(),
        client_id: "caldicott".into(),
        redirect_uri: "https://gp.example/my/sign-in/nhs-login/callback".into(),
        // The client's own key; any RSA key will do here.
        key_pem: PROVIDER_KEY.to_vec(),
        key_id: None,
        algorithm: Algorithm::RS512,
        // The test provider signs with RS256; the algorithm is pinned to it.
        id_token_algorithm: Algorithm::RS256,
        scope: "openid".into(),
    })
    .unwrap()
}

fn token(claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(PROVIDER_KEY).unwrap()).unwrap()
}

fn claims(over: serde_json::Value) -> serde_json::Value {
    let now = jsonwebtoken::get_current_timestamp();
    let mut c = serde_json::json!({
        "iss": "https://auth.example.nhs",
        "aud": "caldicott",
        "sub": "subject-1",
        "exp": now + 300,
        "iat": now,
        "nonce": "the-nonce",
        "vot": "P9.Cp.Cd",
        "identity_proofing_level": "P9",
    });
    for (k, v) in over.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[test]
fn a_good_id_token_is_accepted_and_every_bad_one_refused() {
    // R22
    let keys: ProviderKeys = serde_json::from_str(PROVIDER_JWKS).unwrap();
    let l = login();
    let ok = l.verify_id_token(&token(claims(serde_json::json!({}))), &keys, "the-nonce").unwrap();
    assert_eq!(ok.sub, "subject-1");
    assert_eq!(identity_of(&ok).unwrap(), IdentityLevel::P9);
    let now = jsonwebtoken::get_current_timestamp();
    for (why, over) in [
        ("another nonce", serde_json::json!({"nonce": "replayed"})),
        ("no nonce", serde_json::json!({"nonce": null})),
        ("another audience", serde_json::json!({"aud": "someone-else"})),
        ("another issuer", serde_json::json!({"iss": "https://evil.example"})),
        ("expired", serde_json::json!({"exp": now - 3600})),
    ] {
        let r = l.verify_id_token(&token(claims(over)), &keys, "the-nonce");
        assert!(r.is_err(), "{why} must be refused");
    }
    // A token signed with a shared secret, or with a key the provider does not publish.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(serde_json::json!({})),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    assert!(l.verify_id_token(&forged, &keys, "the-nonce").is_err());
    let mut unknown = Header::new(Algorithm::RS256);
    unknown.kid = Some("not-published".into());
    let t = jsonwebtoken::encode(
        &unknown,
        &claims(serde_json::json!({})),
        &EncodingKey::from_rsa_pem(PROVIDER_KEY).unwrap(),
    )
    .unwrap();
    assert!(l.verify_id_token(&t, &keys, "the-nonce").is_err());
    // The algorithm is pinned: the provider's own key, signing with another algorithm, is
    // refused; so is a token that names no key (no falling back to the first key published).
    let mut other_alg = Header::new(Algorithm::RS512);
    other_alg.kid = Some("test-key-1".into());
    let t = jsonwebtoken::encode(
        &other_alg,
        &claims(serde_json::json!({})),
        &EncodingKey::from_rsa_pem(PROVIDER_KEY).unwrap(),
    )
    .unwrap();
    assert!(l.verify_id_token(&t, &keys, "the-nonce").is_err(), "another algorithm");
    let t = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(serde_json::json!({})),
        &EncodingKey::from_rsa_pem(PROVIDER_KEY).unwrap(),
    )
    .unwrap();
    assert!(l.verify_id_token(&t, &keys, "the-nonce").is_err(), "no key id");
    // A tampered payload fails the signature.
    let good = token(claims(serde_json::json!({})));
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil_payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&claims(serde_json::json!({"sub": "someone-else"}))).unwrap(),
    );
    parts[1] = &evil_payload;
    assert!(l.verify_id_token(&parts.join("."), &keys, "the-nonce").is_err());
}

#[test]
fn the_identity_level_comes_from_vot_and_must_agree() {
    // R22: P5 gets no record; the two claims must not disagree
    let c = |vot: Option<&str>, ipl: Option<&str>| IdClaims {
        sub: "s".into(),
        nonce: None,
        vot: vot.map(Into::into),
        identity_proofing_level: ipl.map(Into::into),
        nhs_number: None,
        birthdate: None,
    };
    assert_eq!(identity_of(&c(Some("P5.Cp.Cd"), None)).unwrap(), IdentityLevel::P5);
    assert_eq!(identity_of(&c(None, Some("P9"))).unwrap(), IdentityLevel::P9);
    assert!(identity_of(&c(Some("P5.Cp.Cd"), Some("P9"))).is_err());
    assert!(identity_of(&c(None, None)).is_err());
    assert!(identity_of(&c(Some("P7.Cp"), None)).is_err());
}
