// Browser tests of the staff portal against a real server and a fresh demo practice:
// Playwright drives Debian's Chromium; axe-core checks every page against WCAG 2.2 AA.
// Screenshots of every page are kept in e2e/artifacts/.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { chromium } from 'playwright-core'
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync, readdirSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHmac, generateKeyPairSync } from 'node:crypto'
import { createServer } from 'node:net'
import { spawn, execFileSync } from 'node:child_process'

const BIN = process.env.CALDICOTT_BIN
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'
const ARTIFACTS = new URL('../artifacts/', import.meta.url).pathname
const AXE = readFileSync(new URL('../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8')
const EXAMPLE = new URL('../../docs/examples/transfer-in.json', import.meta.url).pathname
const WCAG = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']

let dir, server, idp, smtp, maildir, base, browser, passwords, longRecord, patientPasswords, bornPatients, pharmacy
const secrets = {}

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s), as an authenticator app computes it. */
function totp (secret, now = Date.now()) {
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
async function freshCode (secret) {
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
function freePort () {
  return new Promise(resolve => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Resolves with the first match of `re` in a child's output; rejects if it exits first. */
function waitFor (child, stream, re) {
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

/** A page in a fresh browser context (its own cookies). axe is injected, so CSP is bypassed for it. */
async function newPage () {
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1200, height: 900 } })
  return context.newPage()
}

async function check (page, name) {
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

async function signIn (page, username, landing = '/') {
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

test('a clinician signs in with a TOTP code, finds a patient and sees what they see online', async () => {
  const page = await newPage()
  await signIn(page, 'dr.okafor')
  await page.getByRole('heading', { name: 'Find a patient' }).waitFor()
  await check(page, 'find-a-patient')

  const spaced = `${longRecord.slice(0, 3)} ${longRecord.slice(3, 6)} ${longRecord.slice(6)}`
  await page.getByLabel('NHS number, name, date of birth or postcode').fill(spaced)
  await page.getByRole('button', { name: 'Search' }).click()
  await page.getByRole('heading', { name: '1 patient found' }).waitFor()
  await check(page, 'search-results')
  await page.getByRole('link', { name: /PENDLETON, Arthur/ }).click()

  await page.getByRole('heading', { name: /PENDLETON, Arthur/ }).waitFor()
  assert.match(await page.textContent('main'), /Third-party information \(R8\)/)
  await check(page, 'record')
  const withheldOnRecord = await page.locator('text=Withheld').count()
  assert.ok(withheldOnRecord > 0, 'the record shows the entries withheld from the patient')

  await page.getByRole('link', { name: 'View as the patient sees it online' }).click()
  await page.getByRole('heading', { name: /What Arthur sees online/ }).waitFor()
  const online = await page.textContent('main')
  assert.doesNotMatch(online, /Withheld|R8/, 'the online view must not hint at withheld entries')
  await check(page, 'view-as-patient')
  const rowsOf = () => page.locator('tbody tr').evaluateAll(rows => rows.map(r => `${r.cells[0].innerText.trim()}|${r.querySelector('.app-entry-text').innerText.trim()}`))
  const before = await rowsOf()

  // Hide the newest visible entry with a reason; it vanishes from the patient's view, and staff see why.
  await page.getByRole('link', { name: 'Back to the record' }).click()
  const row = page.locator('tbody tr', { has: page.locator('strong:text-is("Visible")') }).first()
  const target = `${(await row.locator('td').first().innerText()).trim()}|${(await row.locator('.app-entry-text').innerText()).trim()}`
  assert.ok(before.includes(target), 'the entry to hide is on the first page of the patient view')
  await row.locator('a:has-text("Hide online")').click()
  await page.getByRole('heading', { name: 'Hide this entry online' }).waitFor()
  await page.getByRole('button', { name: 'Hide this entry online' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'hide-entry-errors')
  await page.getByLabel('Potentially harmful to the patient').check()
  await page.getByLabel('Note explaining the decision').fill('Result not yet discussed with the patient')
  await page.getByRole('button', { name: 'Hide this entry online' }).click()
  await page.waitForURL(`${base}/patients/${longRecord}`)
  assert.match(await page.textContent('main'), /Potentially harmful to the patient \(R8\)/)
  await page.getByRole('link', { name: 'View as the patient sees it online' }).click()
  await page.getByRole('heading', { name: /What Arthur sees online/ }).waitFor()
  const after = await rowsOf()
  const count = (list, x) => list.filter(y => y === x).length
  assert.equal(count(after, target), count(before, target) - 1, 'the hidden entry is gone from the patient view')
  assert.equal(after.length, before.length, 'the page fills up from older entries')
  assert.doesNotMatch(await page.textContent('main'), /Withheld|harmful/)

  // Record a 104: staff first see what it changes for Arthur and are told that access granted by
  // hand carries on (R3); once confirmed, the banner says access is withheld. A 106 lifts it.
  await page.getByRole('link', { name: 'Back to the record' }).click()
  await page.getByRole('button', { name: 'Record 104: enhanced review indicated' }).click()
  await page.getByRole('heading', { name: 'Record 104: enhanced review indicated' }).waitFor()
  assert.match(await page.textContent('main'), /Access set by hand goes on \(R3\)/)
  assert.match(await page.textContent('main'), /Nothing has been saved yet/)
  await check(page, 'confirm-104')
  await page.getByRole('button', { name: 'Record 104', exact: true }).click()
  await page.getByText('Online access withheld: enhanced review (104)').waitFor()
  assert.match(await page.textContent('main'), /not changed by a 104 \(R3\)/)
  assert.match(await page.textContent('main'), /No automatic access: the record has an active 104 code/)
  await check(page, 'record-after-104')
  await page.getByRole('button', { name: 'Record 106: enhanced review not indicated' }).click()
  await page.getByRole('button', { name: 'Record 106', exact: true }).click()
  await page.getByText('106 recorded').waitFor()
  assert.doesNotMatch(await page.textContent('.app-banner'), /enhanced review/)

  // The access panel: Arthur has full historic access granted by hand; remove it (checking what
  // goes first), then set his own level, which needs a date or a confirmed whole record.
  await page.getByRole('link', { name: 'Change online access' }).click()
  await page.getByRole('heading', { name: 'Online access' }).waitFor()
  await check(page, 'access-panel')
  await page.getByRole('button', { name: 'Remove Full record' }).click()
  await page.getByRole('heading', { name: 'Remove the Full record grant' }).waitFor()
  assert.match(await page.textContent('main'), /Arthur's consultations from .* will no longer be visible/)
  await check(page, 'access-remove-check')
  await page.getByRole('button', { name: 'Remove the grant' }).click()
  await page.getByText('None set. The patient has the practice\'s automatic access').waitFor()
  await page.getByLabel('Detailed coded record').check()
  await page.getByLabel('The whole record, however old (historic access)').check()
  await page.getByRole('button', { name: 'Continue' }).click()
  await page.getByText('There is a problem').waitFor()
  assert.match(await page.textContent('main'), /Confirm that you have reviewed the whole record/)
  await check(page, 'access-panel-errors')
  await page.getByLabel('The whole record, however old (historic access)').check()
  await page.getByLabel('I have reviewed the whole record').check()
  await page.getByRole('button', { name: 'Continue' }).click()
  await page.getByRole('heading', { name: "Set Arthur's own level to Detailed coded record" }).waitFor()
  assert.match(await page.textContent('main'), /will no longer be visible/, 'Detailed takes free text away from automatic Full')
  await check(page, 'access-set-level-check')
  await page.getByRole('button', { name: 'Save the level' }).click()
  await page.getByRole('cell', { name: 'The whole record (historic access)' }).waitFor()
  assert.match(await page.textContent('main'), /Detailed coded record, set on/)
  await page.getByRole('link', { name: 'Back to the record' }).click()

  // Record a consultation with a code from the list, hidden online because it names a relative.
  await page.getByRole('link', { name: 'Record a consultation' }).click()
  await page.getByRole('heading', { name: 'Record a consultation' }).waitFor()
  await check(page, 'consultation-form')
  await page.getByLabel('What happened').fill('Daughter worried about memory; discussed her own diagnosis.')
  await page.getByRole('checkbox', { name: 'Visible online' }).uncheck()
  await page.getByRole('button', { name: 'Save', exact: true }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'consultation-errors')
  await page.getByLabel('Third-party information').check()
  await page.getByLabel('If not visible online: note explaining the decision').fill("Mentions the daughter's diagnosis")
  await page.locator('#code_0-pick').selectOption('75367002')
  await page.getByRole('button', { name: 'Save', exact: true }).click()
  await page.waitForURL(`${base}/patients/${longRecord}`)
  assert.match(await page.textContent('tbody'), /Third-party information \(R8\)/)

  // Split that consultation in two (R9): both parts keep its visibility.
  await page.locator('tbody tr', { hasText: 'Daughter worried about memory' }).locator('a:has-text("Show online")').click()
  await page.getByRole('link', { name: 'split it first' }).click()
  await page.getByRole('heading', { name: 'Split this consultation' }).waitFor()
  await check(page, 'split')
  await page.getByLabel(/three hyphens/).fill('Daughter worried about memory;\n---\ndiscussed her own diagnosis.')
  await page.getByRole('button', { name: 'Split' }).click()
  await page.waitForURL(`${base}/patients/${longRecord}`)
  assert.equal(await page.locator('tbody tr', { hasText: 'Daughter worried about memory;' }).count(), 1)
  assert.equal(await page.locator('tbody tr', { hasText: 'discussed her own diagnosis.' }).count(), 1)

  // The filing queue: file Arthur's potassium result hidden until it is discussed.
  await page.getByRole('link', { name: 'Filing' }).click()
  await page.getByRole('heading', { name: 'Filing' }).waitFor()
  await check(page, 'filing-queue')
  const arthursBefore = await page.locator('tbody tr', { hasText: 'PENDLETON' }).count()
  assert.equal(arthursBefore, 2, 'a result and a letter wait for Arthur')
  await page.locator('tbody tr', { hasText: 'Serum potassium' }).getByRole('link', { name: /File/ }).click()
  await page.getByRole('button', { name: 'File' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'file-item-errors')
  await page.getByLabel('No, hide it: Potentially harmful to the patient').check()
  await page.getByLabel('Note (needed if you hide it)').fill('Ask before release: discuss with the patient first')
  await page.getByRole('button', { name: 'File' }).click()
  await page.waitForURL(`${base}/filing`)
  assert.equal(await page.locator('tbody tr', { hasText: 'PENDLETON' }).count(), arthursBefore - 1)
  await page.goto(`${base}/patients/${longRecord}`)

  // A letter that came by post is scanned and added; it waits in the filing queue.
  await page.getByRole('link', { name: 'Add a document' }).click()
  await page.getByRole('heading', { name: 'Add a document' }).waitFor()
  await check(page, 'document-new')
  await page.getByRole('button', { name: 'Add the document' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'document-new-errors')
  await page.getByLabel('What it is').fill('Discharge letter from Riverside Hospital')
  await page.getByLabel('Day', { exact: true }).fill('2')
  await page.getByLabel('Month', { exact: true }).fill('12')
  await page.getByLabel('Year', { exact: true }).fill('2026')
  await page.getByLabel('The file').setInputFiles({
    name: 'discharge.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n')
  })
  await page.getByRole('button', { name: 'Add the document' }).click()
  await page.getByText('Document added.').waitFor()
  await page.getByRole('link', { name: 'Filing' }).click()
  assert.equal(await page.locator('tbody tr', { hasText: 'Discharge letter from Riverside Hospital' }).count(), 1)
  await page.goto(`${base}/patients/${longRecord}`)

  // The audit trail shows what was just done, by whom.
  await page.getByRole('link', { name: /Audit trail/ }).click()
  await page.getByRole('heading', { name: 'Audit trail' }).waitFor()
  const trail = await page.textContent('main')
  assert.match(trail, /Changed an entry's online visibility/)
  assert.match(trail, /Dr Chidi Okafor/)
  assert.match(trail, /note="Result not yet discussed with the patient"/)
  await check(page, 'audit-trail')
  await page.getByRole('link', { name: 'Changes' }).click()
  assert.doesNotMatch(await page.textContent('tbody'), /Opened the record/)

  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.waitForURL(/\/sign-in$/)
  await page.goto(`${base}/patients/${longRecord}`)
  assert.match(page.url(), /\/sign-in$/, 'signed out: the record is out of reach')
})

test('the practice manager pauses automatic access and every page says so', async () => {
  const page = await newPage()
  await signIn(page, 'm.clarke')
  await page.getByRole('link', { name: 'Settings' }).click()
  await page.getByRole('heading', { name: 'Online services settings' }).waitFor()
  await check(page, 'settings')
  await page.getByLabel('Month').fill('13')
  await page.getByRole('button', { name: 'Save settings' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'settings-error')
  await page.getByLabel('Month').fill('10')
  await page.getByLabel('Pause automatic access').check()
  await page.getByRole('button', { name: 'Save settings' }).click()
  await page.getByText('Say why automatic access is paused').first().waitFor()
  await page.getByLabel('Why it is paused, and at whose request').fill('Data controller (Dr Okafor): DPIA under review')
  await page.getByRole('button', { name: 'Save settings' }).click()
  await page.getByText('Settings saved.').waitFor()
  await page.getByText('Automatic online access is paused').first().waitFor()
  await page.getByText('Reason: Data controller (Dr Okafor): DPIA under review').first().waitFor()
  await page.goto(`${base}/patients/${longRecord}`)
  await page.getByText('Automatic online access is paused').first().waitFor()
  await page.goto(`${base}/settings`)
  await page.getByLabel('Pause automatic access').uncheck()
  await page.getByRole('button', { name: 'Save settings' }).click()
  await page.getByText('Settings saved.').waitFor()
  assert.equal(await page.getByText('Automatic online access is paused').count(), 0)
})

test('a clinician transfers in a record from another practice', async () => {
  const page = await newPage()
  await signIn(page, 'dr.hughes')
  await page.getByRole('link', { name: 'Transfer in a record from another practice' }).click()
  await page.getByRole('heading', { name: 'Transfer in a record' }).waitFor()
  await check(page, 'transfer-in')
  const bad = join(dir, 'not-a-bundle.json')
  writeFileSync(bad, '{"resourceType": "Patient"}')
  await page.getByLabel('FHIR Bundle file').setInputFiles(bad)
  await page.getByRole('button', { name: 'Import the record' }).click()
  await page.getByText('There is a problem').waitFor()
  assert.match(await page.textContent('.nhsuk-error-summary'), /not a FHIR Bundle/)
  await check(page, 'transfer-in-error')
  await page.getByLabel('FHIR Bundle file').setInputFiles(EXAMPLE)
  await page.getByRole('button', { name: 'Import the record' }).click()
  await page.getByRole('heading', { name: 'Record transferred in' }).waitFor()
  assert.match(await page.textContent('main'), /9 entries from practice B82001/)
  assert.match(await page.textContent('main'), /2 entries arrived without redaction information/)
  assert.equal(await page.locator('main').getByRole('link', { name: /^Review/ }).count(), 2)
  await check(page, 'transfer-in-done')
  await page.getByRole('link', { name: 'Open the record' }).click()
  await page.waitForURL(/\/patients\/9990995028$/)
  assert.match(await page.textContent('main'), /ELLIS, Ruth/)
})

test('an administrator adds a staff account', async () => {
  const page = await newPage()
  await signIn(page, 's.lee')
  await page.getByRole('link', { name: 'Staff accounts' }).click()
  await page.getByRole('heading', { name: 'Staff accounts' }).waitFor()
  await check(page, 'staff-accounts')
  await page.getByLabel('Name', { exact: true }).fill('Alex Rivers')
  await page.getByLabel('Username').fill('a.rivers')
  await page.getByLabel('Practice manager').check()
  await page.getByLabel('First password').fill('short')
  await page.getByRole('button', { name: 'Add account' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'staff-accounts-error')
  await page.getByLabel('First password').fill('a long first password')
  await page.getByRole('button', { name: 'Add account' }).click()
  await page.getByText('Account a.rivers added for Alex Rivers.').waitFor()
  assert.match(await page.textContent('tbody'), /Alex Rivers[\s\S]*authenticator not set up yet/)
  // A practice integration is registered with its public key; a private key is refused.
  await page.getByRole('link', { name: 'Integrations' }).click()
  await page.getByRole('heading', { name: 'Practice integrations' }).waitFor()
  await check(page, 'integrations')
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-384' })
  await page.getByLabel('Name', { exact: true }).fill('Practice reporting tool')
  await page.getByLabel('Its public key').fill(keys.privateKey.export({ type: 'pkcs8', format: 'pem' }))
  await page.getByRole('button', { name: 'Register the integration' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'integrations-error')
  await page.getByLabel('Its public key').fill(keys.publicKey.export({ type: 'spki', format: 'pem' }))
  await page.getByRole('button', { name: 'Register the integration' }).click()
  await page.getByText('Practice reporting tool is registered.').waitFor()
  assert.match(await page.textContent('#integration-client-id'), /^int_/)
  await check(page, 'integrations-registered')
  // API tokens: each listed with whom it was issued to; one revoked from the page.
  execFileSync(BIN, ['token', 'create', '--practice', 'Y90210', '--staff', 'dr.okafor', '--label', 'e2e reporting'],
    { env: { ...process.env, CALDICOTT_DATABASE: join(dir, 'caldicott.db'), CALDICOTT_LOG: 'warn' }, stdio: 'ignore' })
  await page.getByRole('link', { name: 'API tokens' }).click()
  await page.getByRole('heading', { name: 'API tokens' }).waitFor()
  await check(page, 'api-tokens')
  await page.getByRole('button', { name: /Revoke e2e reporting/ }).click()
  await page.getByText('"e2e reporting" is revoked').waitFor()
  await check(page, 'api-tokens-revoked')
  // Administrators do not open records.
  await page.goto(`${base}/patients/${longRecord}`)
  assert.match(await page.textContent('main'), /cannot/)
})

test('a wrong password shows the error summary and signs no one in', async () => {
  const page = await newPage()
  await page.goto(`${base}/sign-in`)
  await page.getByLabel('Username').fill('dr.hughes')
  await page.getByLabel('Password').fill('not the password')
  await page.getByRole('button', { name: 'Continue' }).click()
  await page.getByText('There is a problem').waitFor()
  assert.match(await page.textContent('.nhsuk-error-summary'), /is not right/)
  await check(page, 'sign-in-error')
  await page.goto(`${base}/`)
  assert.match(page.url(), /\/sign-in$/)
})

test('search explains a query it cannot read', async () => {
  const page = await newPage()
  await signIn(page, 'j.baker')
  // Reception registers a new patient.
  await page.getByRole('link', { name: 'Register a new patient' }).click()
  await page.getByRole('heading', { name: 'Register a patient' }).waitFor()
  await check(page, 'register')
  await page.getByRole('button', { name: 'Register' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'register-errors')
  await page.getByLabel('NHS number').fill('943 476 5919')
  await page.getByLabel('First name').fill('Mary')
  await page.getByLabel('Last name').fill('Seacole')
  await page.getByLabel('Day').fill('23')
  await page.getByLabel('Month').fill('11')
  await page.getByLabel('Year').fill('1985')
  await page.getByLabel('Female').check()
  await page.getByLabel('Postcode').fill('RV1 4QS')
  await page.getByRole('button', { name: 'Register' }).click()
  await page.getByRole('heading', { name: /SEACOLE, Mary/ }).waitFor()
  await page.goto(`${base}/`)
  await page.getByLabel('NHS number, name, date of birth or postcode').fill('943 476 5918')
  await page.getByRole('button', { name: 'Search' }).click()
  await page.getByText('There is a problem').waitFor()
  assert.match(await page.textContent('.nhsuk-error-summary'), /check digit/)
  await check(page, 'search-error')
})

/** Signs a patient in at /my/sign-in. */
async function patientSignIn (page, username) {
  await page.goto(`${base}/my`)
  assert.match(page.url(), /\/my\/sign-in$/)
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password').fill(patientPasswords[username])
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(`${base}/my`)
}

test('a patient sees their record, books and cancels an appointment, orders a repeat and acts for their son', async () => {
  const page = await newPage()
  await page.goto(`${base}/my/sign-in`)
  await check(page, 'patient-sign-in')
  await page.getByLabel('Username').fill('hannah.rivers')
  await page.getByLabel('Password').fill('not my password')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'patient-sign-in-error')
  await patientSignIn(page, 'hannah.rivers')
  await page.getByRole('heading', { name: 'Hello Hannah' }).waitFor()
  assert.match(await page.textContent('main'), /will be paused for review on .*when Leo turns 11/)
  await check(page, 'patient-home')
  await page.getByRole('link', { name: 'Your GP record', exact: true }).click()
  await page.getByRole('heading', { name: 'Your GP record' }).waitFor()
  assert.match(await page.textContent('main'), /Continue amlodipine/)
  await check(page, 'patient-record')
  // Book the last free appointment (well beyond the 24-hour cancelling cut-off, whatever the
  // time of day the test runs), then cancel it.
  await page.goto(`${base}/my/appointments`)
  await check(page, 'patient-appointments')
  await page.getByRole('link', { name: 'Book an appointment' }).click()
  await page.getByRole('button', { name: 'Book this appointment' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'patient-book-error')
  await page.locator('input[name=slot]').last().check()
  await page.getByRole('button', { name: 'Book this appointment' }).click()
  await page.getByText('Your appointment is booked.').waitFor()
  await check(page, 'patient-booked')
  await page.getByRole('button', { name: /Cancel this appointment/ }).first().click()
  await page.getByText('The appointment is cancelled.').waitFor()
  // Order a repeat.
  await page.goto(`${base}/my/prescriptions`)
  assert.match(await page.textContent('main'), /Riverside Pharmacy/)
  await check(page, 'patient-prescriptions')
  await page.getByLabel(/Amlodipine 5mg tablets/).check()
  await page.getByRole('button', { name: 'Order' }).click()
  await page.getByText('Your request has been sent to the practice').waitFor()
  assert.match(await page.textContent('main'), /Waiting for a clinician/)
  // A message to the practice.
  await page.goto(`${base}/my/requests`)
  await page.getByRole('button', { name: 'Send' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'patient-message-error')
  await page.getByLabel('Question about medication').check()
  await page.getByLabel('Your message').fill('Can I take cetirizine with amlodipine?')
  await page.getByRole('button', { name: 'Send' }).click()
  await page.getByText('Your message has been sent.').waitFor()
  await check(page, 'patient-messages')
  // As Leo's mother: his record, within her summary scope.
  await page.goto(`${base}/my`)
  await page.getByRole('link', { name: "Leo Rivers's GP record" }).click()
  await page.getByRole('heading', { name: "Leo Rivers's GP record" }).waitFor()
  const leo = await page.textContent('main')
  assert.match(leo, /Salbutamol/)
  assert.doesNotMatch(leo, /Inhaler technique/, 'a summary proxy does not see consultations')
  await check(page, 'proxy-record')
  await page.goto(`${base}/my/activity`)
  assert.match(await page.textContent('main'), /Viewed your record online/)
  await check(page, 'patient-activity')
  await page.goto(`${base}/my/security`)
  await check(page, 'patient-security')
  await page.getByRole('button', { name: 'Set up two-step sign-in' }).click()
  await page.locator('#totp-secret').waitFor()
  await check(page, 'patient-security-enrol')
})

test('the password pages: change your own, set one with a one-time code or a password letter', async () => {
  const page = await newPage()
  await page.goto(`${base}/sign-in`)
  await page.getByRole('link', { name: 'set a new password with a one-time code' }).click()
  await page.getByRole('heading', { name: 'Set a new password' }).waitFor()
  await check(page, 'sign-in-reset')
  await page.getByRole('button', { name: 'Set new password' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'sign-in-reset-error')
  const my = await newPage()
  await my.goto(`${base}/my/sign-in`)
  assert.match(await my.textContent('main'), /Forgotten your password\?/)
  await my.getByRole('link', { name: 'set a new password' }).click()
  await my.getByRole('heading', { name: 'Set a new password' }).waitFor()
  await check(my, 'patient-reset')
  await my.getByRole('button', { name: 'Set new password' }).click()
  await my.getByText('There is a problem').waitFor()
  await check(my, 'patient-reset-error')
  const staff = await newPage()
  await signIn(staff, 'j.baker')
  await staff.getByRole('link', { name: 'Change password' }).click()
  await staff.getByRole('heading', { name: 'Change your password' }).waitFor()
  await check(staff, 'account-password')
  await staff.getByLabel('Current password').fill('not my password')
  await staff.getByLabel('New password', { exact: true }).fill('a long new password')
  await staff.getByLabel('New password again').fill('a long new password')
  await staff.getByRole('button', { name: 'Change password' }).click()
  await staff.getByText('There is a problem').waitFor()
  assert.match(await staff.textContent('.nhsuk-error-summary'), /current password is not right/)
  await check(staff, 'account-password-error')
})

test('a patient whose identity was not fully checked sees no record but can book', async () => {
  const page = await newPage()
  await patientSignIn(page, 'omar.haddad')
  await page.getByRole('link', { name: 'Your GP record', exact: true }).click()
  assert.match(await page.textContent('main'), /identity must be fully verified/)
  assert.doesNotMatch(await page.textContent('main'), /Back pain/)
  await check(page, 'patient-record-p5')
  await page.goto(`${base}/my/appointments/book`)
  assert.ok(await page.locator('input[name=slot]').count() > 0)
})

test('reception prints a sign-up letter and the patient makes an account with it; a clinician decides a repeat', async () => {
  const staff = await newPage()
  await signIn(staff, 'j.baker')
  await staff.goto(`${base}/patients/${longRecord}`)
  await staff.getByText('Issue online account details (sign-up letter)').click()
  await staff.getByRole('button', { name: 'Print sign-up letter' }).click()
  await staff.getByRole('heading', { name: 'Your GP online services' }).waitFor()
  await check(staff, 'linkage-letter')
  const accountId = (await staff.locator('#letter-account-id').textContent()).trim()
  const key = (await staff.locator('#letter-linkage-key').textContent()).trim()
  const dob = (await staff.goto(`${base}/patients/${longRecord}`), await staff.textContent('.app-banner'))
  const born = dob.match(/Born\s*(\d+) (\w+) (\d{4})/)
  await staff.goto(`${base}/appointments`)
  await check(staff, 'appointment-book')
  await staff.goto(`${base}/patients/${longRecord}/proxies`)
  await check(staff, 'proxies')

  const page = await newPage()
  await page.goto(`${base}/my/sign-up`)
  await check(page, 'patient-sign-up')
  await page.getByLabel('Practice ODS code').fill('Y90210')
  await page.getByLabel('Account ID').fill(accountId)
  await page.getByLabel('Linkage Key').fill(key)
  await page.getByLabel('Last name').fill('Nobody')
  await page.getByLabel('Day').fill(born[1])
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  await page.getByLabel('Month').fill(String(months.indexOf(born[2]) + 1))
  await page.getByLabel('Year').fill(born[3])
  await page.getByLabel('Choose a username').fill('arthur.p')
  await page.getByLabel('Choose a password').fill('a long patient password')
  await page.getByRole('button', { name: 'Create account' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'patient-sign-up-error')
  await page.getByLabel('Last name').fill('Pendleton')
  await page.getByLabel('Choose a password').fill('a long patient password')
  await page.getByRole('button', { name: 'Create account' }).click()
  await page.getByRole('heading', { name: /Hello Arthur/ }).waitFor()

  // Hannah's repeat request waits in the task list; a clinician approves it.
  const doc = await newPage()
  await signIn(doc, 'nurse.patel')
  await doc.getByRole('link', { name: 'Tasks' }).click()
  await check(doc, 'tasks')
  await doc.getByRole('link', { name: 'Repeat prescription request' }).first().click()
  await check(doc, 'task-repeat')
  await doc.getByRole('button', { name: /Approve and issue/ }).first().click()
  await doc.getByText(/Approved by/).first().waitFor()
  // Leo's proxy access, with his mother's link on it.
  await doc.goto(`${base}/?q=Rivers`)
  await doc.locator('main a', { hasText: 'Leo' }).first().click()
  await doc.getByRole('link', { name: /Proxy access/ }).click()
  await doc.getByRole('heading', { name: /Proxy access for RIVERS, Leo/ }).waitFor()
  assert.match(await doc.textContent('main'), /Hannah Rivers \(Mother\)/)
  assert.match(await doc.textContent('main'), /suspended for review when the patient turns 11|turned 11|turns 11|paused/i)
  await check(doc, 'proxies-with-link')
  await doc.getByRole('link', { name: 'Back to the record' }).click()
  await doc.getByRole('link', { name: 'Messages sent to this patient' }).click()
  await doc.getByRole('heading', { name: /Messages sent to RIVERS, Leo/ }).waitFor()
  await check(doc, 'communications')
  await doc.getByRole('link', { name: 'Failed messages' }).click()
  await doc.getByRole('heading', { name: 'Messages that could not be sent' }).waitFor()
  await check(doc, 'failed-messages')
})

/** Signs in at NHS login (the test provider's own pages) as `login`, and comes back. */
async function nhsLogin (page, login) {
  await page.goto(`${base}/my/sign-in`)
  await page.getByRole('link', { name: 'Continue with NHS login' }).click()
  await page.locator('input[name=login]').fill(login)
  await page.locator('input[name=password]').fill('any')
  await page.locator('button[type=submit]').click()
  // The provider asks to share the details with caldicott.
  await page.locator('button[type=submit]').click()
}

test('patients sign in with NHS login: P9 sees the record, P5 does not, a wrong date of birth is refused', async () => {
  const page = await newPage()
  await page.goto(`${base}/my/sign-in`)
  await check(page, 'patient-sign-in-nhs-login')
  await nhsLogin(page, 'hannah-p9')
  await page.getByRole('heading', { name: 'Hello Hannah' }).waitFor()
  await page.getByRole('link', { name: 'Your GP record', exact: true }).click()
  assert.match(await page.textContent('main'), /Continue amlodipine/)

  const p5 = await newPage()
  await nhsLogin(p5, 'omar-p5')
  await p5.getByRole('heading', { name: 'Hello Omar' }).waitFor()
  await p5.goto(`${base}/my/record`)
  assert.match(await p5.textContent('main'), /identity must be fully verified/)

  const wrong = await newPage()
  await nhsLogin(wrong, 'hannah-wrong-birthdate')
  await wrong.getByText('There is a problem').waitFor()
  assert.match(await wrong.textContent('main'), /date of birth in NHS login does not match/)
  await check(wrong, 'patient-nhs-login-refused')
  await wrong.goto(`${base}/my`)
  assert.match(wrong.url(), /\/my\/sign-in$/, 'nobody is signed in after a refusal')
})

test('an app links to a patient; staff action the security alert and the safety-net email arrives', async () => {
  // The administrator registers the app and hands its credentials to the supplier.
  const admin = await newPage()
  await signIn(admin, 's.lee')
  await admin.getByRole('link', { name: 'Patient apps' }).click()
  await admin.getByLabel('App name').fill('Demo Wallet')
  await admin.getByLabel('Supplier').fill('Wallet Ltd')
  await admin.getByRole('button', { name: 'Register app' }).click()
  const clientId = (await admin.locator('#client-id').textContent()).trim()
  const clientSecret = (await admin.locator('#client-secret').textContent()).trim()
  await check(admin, 'apps')
  // Reception prints Omar a letter; the app links with it (as the app would, over HTTP).
  const reception = await newPage()
  await signIn(reception, 'j.baker')
  const omar = bornPatients['omar.haddad']
  await reception.goto(`${base}/patients/${omar.nhs}`)
  await reception.getByText('Issue online account details (sign-up letter)').click()
  await reception.getByRole('button', { name: 'Print sign-up letter' }).click()
  const accountId = (await reception.locator('#letter-account-id').textContent()).trim()
  const key = (await reception.locator('#letter-linkage-key').textContent()).trim()
  const res = await fetch(`${base}/api/apps/v1/links`, {
    method: 'POST',
    headers: { authorization: 'Basic ' + Buffer.from(`${clientId}:${clientSecret}`).toString('base64'), 'content-type': 'application/json' },
    body: JSON.stringify({ ods_code: 'Y90210', account_id: accountId, linkage_key: key, family_name: 'Haddad', birth_date: omar.birthdate })
  })
  assert.equal(res.status, 201)
  // A clinician sees the alert in the task list and sends the safety-net message.
  const doc = await newPage()
  await signIn(doc, 'nurse.patel')
  await doc.getByRole('link', { name: 'Tasks' }).click()
  await doc.getByRole('heading', { name: 'Security alerts: online services linked' }).waitFor()
  await check(doc, 'tasks-with-alerts')
  await doc.getByRole('link', { name: 'Online services linked (security alert)' }).first().click()
  await check(doc, 'task-alert')
  await doc.getByRole('button', { name: 'Send the safety-net message' }).click()
  await doc.getByText('The safety-net email is on its way').waitFor()
  // The outbox worker sends it; it lands in the SMTP server's mailbox.
  let mail = ''
  for (let i = 0; i < 60 && !mail; i++) {
    for (const sub of ['new', 'cur']) {
      const d = join(maildir, sub)
      if (existsSync(d)) for (const f of readdirSync(d)) mail += readFileSync(join(d, f), 'utf8')
    }
    if (!mail) await new Promise(resolve => setTimeout(resolve, 250))
  }
  assert.match(mail, /To: omar\.haddad@example\.com/)
  assert.match(mail, /O\.H\., your GP record at Riverside Medical Practice/)
  // The communications log shows it, and the practice's presets and contact list are there.
  await doc.goto(`${base}/patients/${omar.nhs}/communications`)
  assert.match(await doc.textContent('main'), /safety net/)
  await doc.goto(`${base}/patients/${omar.nhs}/messages/new`)
  assert.match(await doc.textContent('main'), /By email to omar\.haddad@example\.com/)
  await check(doc, 'compose')
  await doc.goto(`${base}/settings/messages`)
  await check(doc, 'presets')
  await doc.goto(`${base}/contact-preferences`)
  await check(doc, 'contact-preferences')
})

test('weeks later, the parent\'s access to her son\'s record pauses at his review age', async () => {
  // The same demo database, served as if 30 days had passed: Leo has turned 11.
  const env = { ...process.env, CALDICOTT_DATABASE: join(dir, 'caldicott.db'), CALDICOTT_LOG: 'info' }
  const later = spawn(BIN, ['demo', '--listen', '127.0.0.1:0', '--patients', '80', '--seed', '5', '--days-ahead', '30'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  try {
    const laterBase = await waitFor(later, 'stderr', /listening on (http:\/\/127\.0\.0\.1:\d+)\//)
    const page = await newPage()
    await page.goto(`${laterBase}/my/sign-in`)
    await page.getByLabel('Username').fill('hannah.rivers')
    await page.getByLabel('Password').fill(patientPasswords['hannah.rivers'])
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { name: 'Hello Hannah' }).waitFor()
    assert.match(await page.textContent('main'), /Paused since .*when Leo turned 11/)
    assert.equal(await page.getByRole('link', { name: "Leo Rivers's GP record" }).count(), 0)
    await check(page, 'patient-home-proxy-paused')
  } finally {
    later.kill()
  }
})

/** Posts a sample Update Record message as the demo pharmacy does. */
async function postUpdate (name) {
  const body = readFileSync(new URL(`../../docs/examples/update-record/${name}`, import.meta.url))
  const res = await fetch(`${base}/api/update-record/v1/messages`, { method: 'POST', headers: { authorization: pharmacy, 'content-type': 'application/fhir+json' }, body })
  return { status: res.status, json: await res.json() }
}

test('a pharmacy sends a Pharmacy First summary; a clinician removes an item and files it; invalid and switched-off messages are refused', async () => {
  const sent = await postUpdate('pharmacy-first.json')
  assert.equal(sent.status, 202)
  assert.equal(sent.json.code, 20013)
  const again = await postUpdate('pharmacy-first.json')
  assert.equal(again.json.code, 20007, 'taken once')
  const bad = await postUpdate('invalid-iteration-2-allergy.json')
  assert.equal(bad.status, 422)
  assert.match(bad.json.problems.join(' '), /Iteration 2/)
  const page = await newPage()
  await signIn(page, 'dr.okafor')
  await page.getByRole('link', { name: 'Pharmacy messages' }).click()
  await page.getByRole('heading', { name: 'Pharmacy messages' }).waitFor()
  await check(page, 'pharmacy-messages')
  await page.goto(`${base}/inbound/${sent.json.id}`)
  await page.getByRole('heading', { name: /Community Pharmacy Pharmacy First Service/ }).waitFor()
  await check(page, 'pharmacy-message')
  await page.getByRole('button', { name: 'Remove the Clinical impression before filing' }).click()
  await page.getByText('removed Clinical impression').waitFor()
  await page.getByRole('button', { name: 'File into the record' }).click()
  await page.waitForURL(/\/inbound\?done$/)
  await page.goto(`${base}/patients/9990996008`)
  assert.match(await page.textContent('main'), /Phenoxymethylpenicillin/)
  assert.match(await page.textContent('main'), /Quayside Pharmacy/)
  // The practice manager switches Update Record off: the next message is refused, and logged.
  const manager = await newPage()
  await signIn(manager, 'm.clarke')
  await manager.goto(`${base}/settings`)
  await manager.getByLabel(/Accept pharmacy consultation summaries/).uncheck()
  await manager.getByRole('button', { name: 'Save settings' }).click()
  await manager.getByText('Settings saved.').waitFor()
  const refused = await postUpdate('contraception.json')
  assert.equal(refused.status, 403)
  assert.equal(refused.json.code, 20010)
  await page.goto(`${base}/inbound`)
  await page.getByText('Refused: Update Record switched off').first().waitFor()
  await manager.goto(`${base}/settings`)
  await manager.getByLabel(/Accept pharmacy consultation summaries/).check()
  await manager.getByRole('button', { name: 'Save settings' }).click()
  await manager.getByText('Settings saved.').waitFor()
})

test('two staff message each other about a patient; a deleted message stays on the patient\'s communications, marked; a SAR is logged with its due date', async () => {
  const reception = await newPage()
  await signIn(reception, 'j.baker')
  await reception.getByRole('link', { name: /^Messages/ }).click()
  await reception.getByRole('heading', { name: 'Messages', exact: true }).waitFor()
  await check(reception, 'chat')
  await reception.getByLabel('To').selectOption({ label: 'Dr Chidi Okafor (Clinician)' })
  await reception.getByLabel('Message', { exact: true }).fill(`Hannah Rivers (${bornPatients['hannah.rivers'].nhs}) asked for a call about her blood pressure`)
  await reception.getByRole('button', { name: 'Send' }).click()
  await reception.getByText('Is this message about').waitFor()
  await check(reception, 'chat-link')
  await reception.getByLabel('Yes, link it').check()
  await reception.getByRole('button', { name: 'Send' }).click()
  await reception.getByText('Message sent.').waitFor()
  const doctor = await newPage()
  await signIn(doctor, 'dr.okafor')
  await doctor.getByRole('link', { name: /Messages \(1 unread\)/ }).click()
  await doctor.getByRole('link', { name: /asked for a call/ }).click()
  await doctor.getByRole('heading', { name: /^Message from Jordan Baker/ }).waitFor()
  await check(doctor, 'chat-message')
  await doctor.getByRole('button', { name: 'Delete' }).click()
  await doctor.waitForURL(/\/chat$/)
  assert.equal(await doctor.getByRole('link', { name: /asked for a call/ }).count(), 0)
  await doctor.goto(`${base}/patients/${bornPatients['hannah.rivers'].nhs}/communications`)
  await doctor.getByText(/asked for a call about her blood pressure/).waitFor()
  await doctor.getByText(/Deleted by Dr Chidi Okafor on/).waitFor()
  await check(doctor, 'communications-staff-messages')
  // A subject access request for her: the statutory due date.
  await reception.goto(`${base}/sars/new`)
  await check(reception, 'sar-new')
  await reception.getByLabel("Patient's NHS number").fill(bornPatients['hannah.rivers'].nhs)
  await reception.getByLabel('Who made the request').fill('Hannah Rivers')
  await reception.getByLabel('Day', { exact: true }).fill('2')
  await reception.getByLabel('Month', { exact: true }).fill('10')
  await reception.getByLabel('Year', { exact: true }).fill('2026')
  await reception.getByRole('button', { name: 'Log the request' }).click()
  await reception.getByRole('heading', { name: /^Subject access request/ }).waitFor()
  assert.match(await reception.textContent('main'), /2 Nov 2026/)
  await check(reception, 'sar')
  const sarUrl = reception.url()
  await reception.goto(`${base}/sars`)
  await check(reception, 'sars')
  // The export: the deleted message is there, flagged; released only once decided, behind the
  // password; the PDF says who deleted it.
  await doctor.goto(`${sarUrl}/export`)
  await doctor.getByRole('heading', { name: /^Review and release/ }).waitFor()
  assert.match(await doctor.textContent('main'), /Deleted from the inbox by Dr Chidi Okafor/)
  assert.match(await doctor.textContent('main'), /Not ready to release/)
  await check(doctor, 'sar-export')
  const flagged = doctor.locator('form[action$="/export/decide"]').first()
  for (const box of await flagged.locator('input[name="key"]').all()) await box.check()
  await flagged.getByLabel('Release', { exact: true }).check()
  await flagged.getByRole('button', { name: 'Record the decision' }).click()
  await doctor.getByLabel('Your password, to confirm the release').fill(passwords['dr.okafor'])
  await doctor.getByRole('button', { name: 'Make the release' }).click()
  await doctor.getByRole('button', { name: 'Download the PDF' }).waitFor()
  await check(doctor, 'sar-release')
  const [download] = await Promise.all([
    doctor.waitForEvent('download'),
    doctor.getByRole('button', { name: 'Download the PDF' }).click()
  ])
  const text = execFileSync('pdftotext', [await download.path(), '-']).toString()
  assert.match(text, /asked for a call about her blood pressure/)
  assert.match(text, /Deleted from the inbox by Dr Chidi Okafor/)
})

test('a clinician reviews a held-back patient with the assistant and grants access', async () => {
  const page = await newPage()
  await signIn(page, 'dr.okafor')
  await page.getByRole('link', { name: 'Reviews' }).click()
  await page.getByRole('heading', { name: 'Enhanced reviews' }).waitFor()
  await check(page, 'reviews')
  const first = page.locator('table tbody tr').first()
  const name = (await first.locator('a').textContent()).trim()
  await first.locator('a').click()
  await page.getByRole('heading', { name: /^Enhanced review: / }).waitFor()
  await page.getByText('Entries to check before giving access').waitFor()
  await check(page, 'review')
  // Withholding needs a reason and a date.
  await page.getByLabel('Withhold access').check()
  await page.getByRole('button', { name: 'Record the outcome' }).click()
  await page.getByText('There is a problem').waitFor()
  await page.getByText('Say why access is withheld').first().waitFor()
  await check(page, 'review-error')
  await page.getByLabel('Grant access').check()
  await page.getByRole('button', { name: 'Record the outcome' }).click()
  await page.waitForURL(/\/reviews\?decided$/)
  assert.equal(await page.getByRole('link', { name, exact: true }).count(), 0, 'the patient has left the queue')
})

test('the practice manager bulk-codes a cohort from a CSV, undoes it, keeps the action plan and downloads the monthly return', async () => {
  const page = await newPage()
  await signIn(page, 'm.clarke')
  await page.getByRole('link', { name: 'Reports' }).click()
  await page.getByRole('heading', { name: 'Reports' }).waitFor()
  await check(page, 'reports')
  // The action plan: checked, then saved.
  await page.getByLabel('Owner').fill('Dr Okafor')
  await page.getByRole('button', { name: 'Save the action plan' }).click()
  await page.getByText('There is a problem').waitFor()
  await check(page, 'reports-error')
  const soon = new Date(Date.now() + 60 * 86400000).toISOString().slice(0, 10)
  await page.getByLabel('Every excluded patient reviewed by').fill(soon)
  await page.getByLabel('Below half excluded by').fill(soon)
  await page.getByLabel('Progress').fill('Reviews booked with the duty doctor each week.')
  await page.getByRole('button', { name: 'Save the action plan' }).click()
  await page.getByText('Action plan saved.').waitFor()
  // Bulk 104 for two patients from a CSV, with the warnings and a typed confirmation.
  await page.goto(`${base}/bulk-code`)
  await check(page, 'bulk')
  const nhs = [bornPatients['hannah.rivers'].nhs, bornPatients['omar.haddad'].nhs]
  await page.getByLabel(/a CSV file of NHS numbers/).setInputFiles({ name: 'cohort.csv', mimeType: 'text/csv', buffer: Buffer.from(`NHS number\n${nhs.join('\n')}\n`) })
  await page.getByRole('button', { name: 'See who it would change' }).click()
  await page.getByText('NHS England advises against bulk 104').waitFor()
  await check(page, 'bulk-preview')
  await page.getByLabel(/type 2$/).fill('3')
  await page.getByRole('button', { name: 'Apply 104' }).click()
  await page.getByText('Type 2 to confirm').first().waitFor()
  await page.getByLabel(/type 2$/).fill('2')
  await page.getByRole('button', { name: 'Apply 104' }).click()
  await page.getByText('104 recorded for 2 patients').waitFor()
  await check(page, 'bulk-done')
  // The monthly return, on the page and as a file.
  await page.goto(`${base}/reports`)
  await page.getByRole('link', { name: 'Monthly return of all active exclusions' }).click()
  await page.getByRole('heading', { name: 'Monthly return of exclusions' }).waitFor()
  await check(page, 'monthly-return')
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: /Download the return/ }).click()])
  const csv = readFileSync(await download.path(), 'utf8')
  assert.match(csv, /^nhs_number,family_name,given_name,date_of_birth,age,date_added,added_by\n\d{10},/)
  for (const n of nhs) assert.match(csv, new RegExp(`^${n},`, 'm'), 'the bulk-coded patients are in the return')
  await page.goto(`${base}/reports/trend`)
  await page.getByRole('heading', { name: /by month/ }).waitFor()
  await check(page, 'trend')
  await page.goto(`${base}/reports/proxy-reviews`)
  await page.getByRole('heading', { name: 'Proxy access reviews due' }).waitFor()
  await check(page, 'proxy-reviews')
  await page.goto(`${base}/bulk-code`)
  // Undo it.
  await page.getByRole('button', { name: /^Undo with 106/ }).first().click()
  await page.getByRole('heading', { name: 'Undo a bulk 104' }).waitFor()
  await check(page, 'bulk-undo')
  await page.getByLabel(/type 2$/).fill('2')
  await page.getByRole('button', { name: 'Record 106' }).click()
  await page.getByText('106 recorded for 2 patients').waitFor()
  await page.getByRole('cell', { name: 'Undone' }).first().waitFor()
})

test('an ICB analyst sees every practice, the one over 50% flagged, and no patient', async () => {
  // The practice bulk-codes everyone aged 16 or over from the command line: over 50% excluded.
  const env = { ...process.env, CALDICOTT_DATABASE: join(dir, 'caldicott.db'), CALDICOTT_LOG: 'warn' }
  const args = ['bulk-code', '--practice', 'Y90210', '--as', 'm.clarke', '--code', '104', '--min-age', '16']
  let dry = ''
  try { execFileSync(BIN, args, { env, encoding: 'utf8', stdio: 'pipe' }) } catch (e) { dry = e.stderr; assert.equal(e.status, 2, dry) }
  const count = dry.match(/--confirm (\d+)/)[1]
  execFileSync(BIN, [...args, '--confirm', count], { env, encoding: 'utf8', stdio: 'pipe' })
  const page = await newPage()
  // The analyst lands on the ICB figures, not the patient search.
  await signIn(page, 'icb.analyst', '/icb')
  await page.getByRole('heading', { name: 'Exclusions across the ICB' }).waitFor()
  await check(page, 'icb')
  const flagged = page.locator('tr', { hasText: 'Riverside Medical Practice (Y90210)' })
  await flagged.getByText('Over 50%').waitFor()
  assert.doesNotMatch(await page.content(), /\b9\d{9}\b/, 'no NHS number on the ICB page')
  const res = await page.goto(`${base}/patients/${longRecord}`)
  assert.equal(res.status(), 403)
  const csv = await page.request.get(`${base}/reports/monthly-return.csv`)
  assert.equal(csv.status(), 403)
})
