// An OpenID Connect provider configured like NHS login, for the browser tests: authorization
// code with PKCE (S256) required, private_key_jwt client authentication (RS512), and ID tokens
// that carry `vot` and `identity_proofing_level`; the userinfo endpoint gives `nhs_number` and
// `birthdate`. It is the real `oidc-provider` package, not a stand-in.
//
// node oidc/provider.js <port> <client public JWKS file> <redirect URI>
// with NHS_LOGIN_ACCOUNTS = {"login name": {"nhs_number", "birthdate", "family_name", "given_name", "level"}}.

import Provider from 'oidc-provider'
import { readFileSync } from 'node:fs'
import { generateKeyPairSync } from 'node:crypto'

const [port, clientJwksFile, redirectUri] = process.argv.slice(2)
const issuer = `http://127.0.0.1:${port}`
const accounts = JSON.parse(process.env.NHS_LOGIN_ACCOUNTS || '{}')
const signing = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' })

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'caldicott',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS512',
    jwks: JSON.parse(readFileSync(clientJwksFile, 'utf8')),
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code']
  }],
  jwks: { keys: [{ ...signing, kid: 'nhs-login-test', use: 'sig', alg: 'RS256' }] },
  enabledJWA: { clientAuthSigningAlgValues: ['RS512', 'RS256', 'PS512', 'ES256'] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'nhs_number', 'birthdate'],
  claims: {
    openid: ['sub', 'vot', 'identity_proofing_level'],
    profile: ['family_name', 'given_name'],
    nhs_number: ['nhs_number'],
    birthdate: ['birthdate']
  },
  conformIdTokenClaims: false,
  cookies: { keys: ['caldicott-e2e-only'] },
  features: { devInteractions: { enabled: true } },
  async findAccount (ctx, id) {
    const a = accounts[id]
    if (!a) return undefined
    return {
      accountId: id,
      async claims () {
        return {
          sub: id,
          vot: `${a.level}.Cp.Cd`,
          identity_proofing_level: a.level,
          nhs_number: a.nhs_number,
          birthdate: a.birthdate,
          family_name: a.family_name,
          given_name: a.given_name
        }
      }
    }
  }
})

provider.listen(Number(port), '127.0.0.1', () => console.log(`ready ${issuer}`))
