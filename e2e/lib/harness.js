// What every browser test file shares: a real server on a fresh demo practice (with a real
// OpenID Connect provider set up like NHS login and a real SMTP server), Debian's Chromium driven
// by Playwright, axe-core's WCAG 2.2 AA check and the sign-in steps. Importing this module starts
// them before the file's first test and stops them after its last. Screenshots of every page
// checked are kept in e2e/artifacts/.

import { before, after } from 'node:test'
import assert from 'node:assert/strict'
import { chromium } from 'playwright-core'
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync, readdirSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHmac, generateKeyPairSync } from 'node:crypto'
import { createServer } from 'node:net'
import { spawn, execFileSync } from 'node:child_process'

export const BIN = process.env.CALDICOTT_BIN
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'
export const ARTIFACTS = new URL('../artifacts/', import.meta.url).pathname
const AXE = readFileSync(new URL('../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8')
export const EXAMPLE = new URL('../../docs/examples/transfer-in.json', import.meta.url).pathname
const WCAG = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']

export let dir, server, maildir, base, browser, passwords, longRecord, patientPasswords, bornPatients, pharmacy
let idp, smtp
const secrets = {}

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s), as an authenticator app computes it. */
export function totp (secret, now = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = ''
  for (const c of secret.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0')
  const key = Buffer.from(bits.match(/.{8}/g).map(b => parseInt(b, 2)))
  const counter = Buffer.alloc(8)
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 30000)))
  const h = createHmac('sha1', key).update(counter).digest()
  const o = h[h.length - 1] & 15
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0')
}

// A code is accepted once (RFC 6238 §5.2): a second sign-in by the same person within the same
// 30 seconds waits for the next code, as a person would.
const lastStep = {}
export async function freshCode (secret) {
  let step = Math.floor(Date.now() / 30000)
  if (lastStep[secret] !== undefined && step <= lastStep[secret]) {
    await new Promise(resolve => setTimeout(resolve, (lastStep[secret] + 1) * 30000 - Date.now() + 250))
    step = Math.floor(Date.now() / 30000)
  }
  lastStep[secret] = step
  return totp(secret)
}

before(async () => {
  assert.ok(BIN, 'CALDICOTT_BIN must name the caldicott binary')
  mkdirSync(ARTIFACTS, { recursive: true })
  dir = mkdtempSync(join(tmpdir(), 'caldicott-e2e-'))
  const env = { ...process.env, CALDICOTT_DATABASE: join(dir, 'caldicott.db'), CALDICOTT_LOG: 'info' }
  const out = execFileSync(BIN, ['demo', '--build-only', '--patients', '80', '--seed', '5', '--long-record', '120'], { env, encoding: 'utf8' })
  passwords = Object.fromEntries([...out.matchAll(/^ {2}(\S+)\s+(\S+)\s+/gm)].map(m => [m[1], m[2]]))
  longRecord = out.match(/Long record: NHS number (\d{10})/)[1]
  const [, pharmacyId, pharmacySecret] = out.match(/client id (\S+) and secret (\S+)/)
  pharmacy = 'Basic ' + Buffer.from(`${pharmacyId}:${pharmacySecret}`).toString('base64')
  const patients = [...out.split('Demo patients')[1].matchAll(/^ {2}(\S+)\s+(\S+)\s+NHS number (\d{10}), born (\S+)\./gm)]
  patientPasswords = Object.fromEntries(patients.map(m => [m[1], m[2]]))
  const born = Object.fromEntries(patients.map(m => [m[1], { nhs: m[3], birthdate: m[4] }]))
  bornPatients = born

  // A real OpenID Connect provider set up like NHS login, and caldicott as its client.
  const [appPort, idpPort] = [await freePort(), await freePort()]
  const redirect = `http://127.0.0.1:${appPort}/my/sign-in/nhs-login/callback`
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  writeFileSync(join(dir, 'client-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }))
  writeFileSync(join(dir, 'client-jwks.json'), JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'caldicott-e2e', use: 'sig', alg: 'RS512' }] }))
  const person = (p, level, birthdate) => ({ nhs_number: p.nhs, birthdate: birthdate || p.birthdate, level })
  const accounts = {
    'hannah-p9': person(born['hannah.rivers'], 'P9'),
    'omar-p5': person(born['omar.haddad'], 'P5'),
    'hannah-wrong-birthdate': person(born['hannah.rivers'], 'P9', '1990-01-01')
  }
  idp = spawn(process.execPath, [new URL('../oidc/provider.js', import.meta.url).pathname, String(idpPort), join(dir, 'client-jwks.json'), redirect],
    { env: { ...process.env, NHS_LOGIN_ACCOUNTS: JSON.stringify(accounts) }, stdio: ['ignore', 'pipe', 'pipe'] })
  await waitFor(idp, 'stdout', /ready (http\S+)/)
  // A real SMTP server (Debian's python3-aiosmtpd) that keeps what it receives in a maildir.
  const smtpPort = await freePort()
  maildir = join(dir, 'mail')
  smtp = spawn('/usr/bin/python3', ['-m', 'aiosmtpd', '-n', '-l', `127.0.0.1:${smtpPort}`, '-c', 'aiosmtpd.handlers.Mailbox', maildir], { stdio: 'ignore' })
  const oidcEnv = {
    ...env,
    CALDICOTT_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
    CALDICOTT_SMTP_FROM: 'Riverside Medical Practice <surgery@riverside.example.nhs.uk>',
    CALDICOTT_OIDC_ISSUER: `http://127.0.0.1:${idpPort}`,
    CALDICOTT_OIDC_CLIENT_ID: 'caldicott',
    CALDICOTT_OIDC_KEY_FILE: join(dir, 'client-key.pem'),
    CALDICOTT_OIDC_KEY_ID: 'caldicott-e2e',
    // The local provider signs ID tokens with RS256 (NHS login: RS512, the default).
    CALDICOTT_OIDC_ID_TOKEN_ALG: 'RS256',
    CALDICOTT_OIDC_REDIRECT_URI: redirect
  }
  server = spawn(BIN, ['serve', '--listen', `127.0.0.1:${appPort}`], { env: oidcEnv, stdio: ['ignore', 'ignore', 'pipe'] })
  base = await waitFor(server, 'stderr', /listening on (http:\/\/127\.0\.0\.1:\d+)\//)
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
})

/** A port nobody is listening on. */
export function freePort () {
  return new Promise(resolve => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Resolves with the first match of `re` in a child's output; rejects if it exits first. */
export function waitFor (child, stream, re) {
  return new Promise((resolve, reject) => {
    let log = ''
    child[stream].on('data', d => {
      log += d
      const m = log.match(re)
      if (m) resolve(m[1])
    })
    child.on('exit', code => reject(new Error(`exited ${code}: ${log}`)))
  })
}

after(async () => {
  await browser?.close()
  server?.kill()
  idp?.kill()
  smtp?.kill()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** The two widths every page is tried at: a desktop screen and a small phone. */
export const WIDTHS = [1280, 375]

/**
 * A page in a fresh browser context (its own cookies), `width` pixels wide. axe is injected, so
 * CSP is bypassed for it unless `csp` is set (a test of the page's own scripts and styles).
 */
export async function newPage (width = 1280, { csp = false } = {}) {
  const context = await browser.newContext({ bypassCSP: !csp, viewport: { width, height: 900 } })
  return context.newPage()
}

export async function check (page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
  await page.addScriptTag({ content: AXE })
  const result = await page.evaluate(async tags => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: 'tag', values: tags } })
    return {
      passes: r.passes.length,
      violations: r.violations.map(v => `${v.id}: ${v.help} (${v.nodes.map(n => n.target.join(' ')).join(', ')})`)
    }
  }, WCAG)
  assert.ok(result.passes > 10, `${name}: axe evaluated only ${result.passes} rules`)
  assert.deepEqual(result.violations, [], `${name}: accessibility violations`)
}

export async function signIn (page, username, landing = '/') {
  await page.goto(`${base}/`)
  assert.match(page.url(), /\/sign-in$/)
  await check(page, 'sign-in')
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password').fill(passwords[username])
  await page.getByRole('button', { name: 'Continue' }).click()
  await page.waitForURL(/\/sign-in\/code$/)
  if (secrets[username]) {
    // Enrolled in an earlier test: the authenticator already holds the secret.
    await page.getByLabel(/6-digit code/).fill(await freshCode(secrets[username]))
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.waitForURL(`${base}${landing}`)
    return secrets[username]
  }
  const secret = (await page.locator('#totp-secret').textContent()).trim()
  secrets[username] = secret
  await check(page, 'enrol-authenticator')
  await page.getByLabel(/6-digit code/).fill('000000')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'wrong-code')
  await page.getByLabel(/6-digit code/).fill(await freshCode(secret))
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(`${base}${landing}`)
  return secret
}

/** A patient signs in with the username and password the demo printed, landing on their home. */
export async function patientSignIn (page, username) {
  await page.goto(`${base}/my`)
  assert.match(page.url(), /\/my\/sign-in$/)
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password').fill(patientPasswords[username])
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(`${base}/my`)
}
