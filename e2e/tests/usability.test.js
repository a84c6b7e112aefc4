// Issue 23: what people see, tried as receptionists, clinicians, administrators and patients
// would, at a desktop width (1280 px) and a small phone's (375 px). Each test names the failure it
// guards against; each would have failed before the fix. Screenshots: e2e/artifacts/.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { base, longRecord, WIDTHS, newPage, check, signIn, patientSignIn } from '../lib/harness.js'

/** The boxes of every link and button in the page's header, with their names. */
async function headerTargets (page) {
  return page.locator('header a, header button').evaluateAll(els => els
    .filter(e => e.offsetParent !== null)
    .map(e => {
      const r = e.getBoundingClientRect()
      return { name: e.textContent.trim().replace(/\s+/g, ' '), x: r.x, y: r.y, width: r.width, height: r.height }
    }))
}

/**
 * WCAG 2.2 SC 2.5.8 (target size, minimum): each target is at least 24 by 24 CSS pixels, or a
 * 24 px circle centred on it meets no other target.
 */
function assertTargetSizes (targets, where) {
  for (const t of targets) {
    if (t.width >= 24 && t.height >= 24) continue
    const cx = t.x + t.width / 2
    const cy = t.y + t.height / 2
    for (const o of targets) {
      if (o === t) continue
      const nx = Math.max(o.x, Math.min(cx, o.x + o.width))
      const ny = Math.max(o.y, Math.min(cy, o.y + o.height))
      assert.ok(Math.hypot(nx - cx, ny - cy) >= 12, `${where}: "${t.name}" is ${Math.round(t.width)}×${Math.round(t.height)} px and crowds "${o.name}"`)
    }
  }
}

for (const width of WIDTHS) {
  test(`${width} px: an unknown address is a "Page not found" page with a way back, signed in or out`, async () => {
    const page = await newPage(width)
    const r = await page.goto(`${base}/no-such-page`)
    assert.equal(r.status(), 404)
    assert.equal(await page.title(), 'Page not found – caldicott')
    assert.equal(await page.getAttribute('html', 'lang'), 'en-GB')
    await page.getByRole('heading', { name: 'Page not found', level: 1 }).waitFor()
    await check(page, `not-found-signed-out-${width}`)
    await page.getByRole('link', { name: 'Go to sign in' }).click()
    await page.waitForURL(/\/sign-in$/)

    const patient = await newPage(width)
    assert.equal((await patient.goto(`${base}/my/no-such-page`)).status(), 404)
    assert.equal(await patient.title(), 'Page not found – Your GP services')
    await patientSignIn(patient, 'hannah.rivers')
    assert.equal((await patient.goto(`${base}/my/records-of-everyone`)).status(), 404)
    await patient.getByRole('heading', { name: 'Page not found' }).waitFor()
    await check(patient, `not-found-patient-${width}`)
    await patient.getByRole('link', { name: 'Go to your home page' }).click()
    await patient.waitForURL(`${base}/my`)

    // The APIs keep their JSON.
    const api = await page.request.get(`${base}/api/v1/no-such-route`)
    assert.equal(api.status(), 404)
    assert.equal((await api.json()).error.status, 404)
  })

  test(`${width} px: an administrator starts on their own home, and a refusal does not loop back to a page they may not use`, async () => {
    const page = await newPage(width)
    await signIn(page, 's.lee', '/staff')
    await page.getByRole('heading', { name: 'Staff accounts' }).waitFor()
    const r = await page.goto(`${base}/appointments`)
    assert.equal(r.status(), 403)
    await check(page, `refused-administrator-${width}`)
    await page.getByRole('link', { name: 'Go to your home page' }).click()
    await page.waitForURL(`${base}/staff`)
    const missing = await page.goto(`${base}/no-such-page`)
    assert.equal(missing.status(), 404)
    await page.getByRole('navigation', { name: 'Staff menu' }).waitFor()
    await check(page, `not-found-administrator-${width}`)
  })

  test(`${width} px: header links are targets a finger can hit, and the staff menu is one navigation landmark`, async () => {
    const staff = await newPage(width)
    await signIn(staff, 'j.baker')
    const nav = staff.getByRole('navigation', { name: 'Staff menu' })
    await nav.waitFor()
    assert.ok(await nav.getByRole('link', { name: 'Find a patient' }).isVisible())
    assertTargetSizes(await headerTargets(staff), `staff header at ${width} px`)
    await check(staff, `staff-header-${width}`)

    const patient = await newPage(width)
    await patientSignIn(patient, 'hannah.rivers')
    assertTargetSizes(await headerTargets(patient), `patient header at ${width} px`)
    await check(patient, `patient-header-${width}`)
  })

  test(`${width} px: under the site's own security policy, NHS.UK's scripts start: focus moves to the error summary and the title says "Error:"`, async () => {
    // No axe here: the page runs with its content security policy enforced, as a patient's
    // browser runs it, and axe cannot be injected into that.
    const page = await newPage(width, { csp: true })
    await page.goto(`${base}/my/sign-in`)
    assert.ok(await page.evaluate(() => document.body.classList.contains('nhsuk-frontend-supported')),
      'NHS.UK frontend is told the browser supports it')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.locator('.nhsuk-error-summary').waitFor()
    assert.match(await page.title(), /^Error: /)
    await page.waitForFunction(() => document.activeElement?.classList.contains('nhsuk-error-summary'))
    // Its links move focus to the field.
    await page.locator('.nhsuk-error-summary a').first().click()
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'INPUT')

    const staff = await newPage(width, { csp: true })
    await staff.goto(`${base}/sign-in`)
    await staff.getByRole('button', { name: 'Continue' }).click()
    await staff.locator('.nhsuk-error-summary').waitFor()
    assert.match(await staff.title(), /^Error: /)
    await staff.waitForFunction(() => document.activeElement?.classList.contains('nhsuk-error-summary'))
  })

  test(`${width} px: a patient books by kind, day and time, checks, confirms, and a cancelled appointment leaves "Upcoming"`, async () => {
    const page = await newPage(width)
    await patientSignIn(page, 'omar.haddad')
    await page.goto(`${base}/my/appointments`)
    await page.getByRole('link', { name: 'Book an appointment' }).click()
    await page.getByRole('heading', { name: 'What kind of appointment do you need?' }).waitFor()
    const tall = () => page.evaluate(() => document.documentElement.scrollHeight)
    // One question a page: never the whole diary as one radio group.
    assert.ok(await page.locator('input[type=radio]').count() <= 3)
    assert.ok(await tall() < 2000, `the first step is ${await tall()} px tall`)
    await check(page, `book-kind-${width}`)
    await page.getByLabel('GP telephone appointment').check()
    await page.getByRole('button', { name: 'Continue' }).click()
    await page.getByRole('heading', { name: 'Which day would you like?' }).waitFor()
    assert.ok(await page.locator('input[name=day]').count() <= 31)
    await check(page, `book-day-${width}`)
    await page.locator('input[name=day]').last().check()
    await page.getByRole('button', { name: 'Continue' }).click()
    await page.getByRole('heading', { name: /Choose a time on/ }).waitFor()
    assert.ok(await page.locator('input[name=slot]').count() <= 12, 'one clinic day of times')
    assert.ok(await tall() < 4000, `the times page is ${await tall()} px tall`)
    await check(page, `book-time-${width}`)
    await page.getByRole('button', { name: 'Continue' }).click()
    await page.getByText('Choose a time', { exact: true }).first().waitFor()
    await page.locator('input[name=slot]').last().check()
    const time = (await page.locator('input[name=slot]:checked + label').textContent()).trim()
    await page.getByRole('button', { name: 'Continue' }).click()
    await page.getByRole('heading', { name: 'Check your appointment' }).waitFor()
    const summary = await page.textContent('.nhsuk-summary-list')
    assert.match(summary, /GP telephone appointment/)
    assert.match(summary, /The practice will phone you/, 'a telephone appointment says so')
    assert.doesNotMatch(summary, /Consulting room/)
    assert.match(summary, new RegExp(time))
    await check(page, `book-check-${width}`)
    await page.getByRole('button', { name: 'Book this appointment' }).click()
    await page.getByText('Your appointment is booked.').waitFor()
    const upcoming = () => page.locator('h2:text-is("Upcoming") ~ .nhsuk-card').allTextContents()
    assert.ok((await upcoming()).some(t => t.includes(time) && t.includes('the practice will phone you')))
    await page.getByRole('button', { name: new RegExp(`Cancel this appointment on .*${time}`) }).click()
    await page.getByText('The appointment is cancelled.').waitFor()
    assert.ok(!(await upcoming()).some(t => t.includes(time)), 'the cancelled appointment is not upcoming')
    const cancelled = await page.locator('h2:text-is("Cancelled") + ul').textContent()
    assert.match(cancelled, new RegExp(time))
    await check(page, `appointments-cancelled-${width}`)
  })

  test(`${width} px: a patient whose identity was checked only in part is offered what they can use, and told in plain words how to get more`, async () => {
    const page = await newPage(width)
    await patientSignIn(page, 'omar.haddad')
    await page.getByRole('heading', { name: 'Hello Omar' }).waitFor()
    const offered = await page.locator('header a, main a').evaluateAll(as => as.map(a => a.getAttribute('href')))
    for (const unusable of ['/my/record', '/my/prescriptions', '/my/activity', '/my/apps']) {
      assert.ok(!offered.includes(unusable), `a P5 patient is not offered ${unusable}`)
    }
    for (const usable of ['/my/appointments', '/my/requests']) assert.ok(offered.includes(usable), usable)
    const main = await page.textContent('main')
    assert.match(main, /To see your GP record and order repeat prescriptions/)
    assert.match(main, /photo ID/)
    assert.doesNotMatch(await page.textContent('body'), /P9|P5/, 'no identity-level jargon')
    await check(page, `patient-home-p5-${width}`)
    await page.goto(`${base}/my/record`)
    assert.match(await page.textContent('main'), /needs to check who you are in full/)
    assert.doesNotMatch(await page.textContent('body'), /P9|P5/)
  })

  test(`${width} px: the printed record says whose it is, from which practice and when, and holds every entry, not one page`, async () => {
    const page = await newPage(width)
    await patientSignIn(page, 'hannah.rivers')
    await page.goto(`${base}/my/record`)
    // Every entry Hannah can see, page by page, as she would read them.
    let seen = 0
    for (let at = page; ;) {
      seen += await at.locator('.app-record-entry').count()
      const older = at.getByRole('link', { name: 'Older entries' })
      if (await older.count() === 0) break
      await older.click()
      await at.waitForLoadState()
    }
    await page.goto(`${base}/my/record`)
    // Printed from the record page itself: the page carries whose it is.
    await page.emulateMedia({ media: 'print' })
    const facts = page.locator('.app-printed-facts')
    assert.ok(await facts.isVisible(), 'a printed page names the patient')
    assert.match(await facts.textContent(), /Hannah RIVERS/)
    assert.match(await facts.textContent(), /NHS number\s*\d{3} \d{3} \d{4}/)
    assert.match(await facts.textContent(), /Riverside Medical Practice/)
    assert.match(await facts.textContent(), /Printed\s*\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}/)
    assert.ok(!(await page.locator('header').isVisible()), 'the menus are left off')
    await page.emulateMedia({ media: 'screen' })
    assert.ok(!(await facts.isVisible()), 'on screen the record page does not repeat them')
    await page.getByRole('link', { name: 'Print or save the whole record' }).click()
    await page.getByRole('heading', { name: 'Your GP record' }).waitFor()
    assert.equal(await page.locator('.app-record-entry').count(), seen, 'the printout holds every entry the patient can see')
    assert.match(await page.textContent('main'), new RegExp(`\\(${seen} entries\\)`))
    await check(page, `record-printout-${width}`)
  })

  test(`${width} px: a clinician's record page: entries first with a skip link, reasons in words, UK dates, one NHS number format, proxies by name`, async () => {
    const page = await newPage(width)
    await signIn(page, 'dr.hughes')
    await page.goto(`${base}/patients/${longRecord}`)
    await page.getByRole('heading', { name: /PENDLETON, Arthur/ }).waitFor()
    // From the top of the page, the skip link comes before the record's own controls...
    let tabs = 0
    for (; tabs < 40; tabs++) {
      await page.keyboard.press('Tab')
      if (await page.evaluate(() => document.activeElement?.textContent?.trim()) === 'Skip to the entries') break
    }
    assert.ok(tabs < 25, `the skip link is ${tabs + 1} tabs in`)
    await page.keyboard.press('Enter')
    // ...and from it the first entry's "Hide online" is a few tabs away, not 37.
    let more = 0
    for (; more < 10; more++) {
      await page.keyboard.press('Tab')
      if (/^(Hide|Show) online/.test(await page.evaluate(() => document.activeElement?.textContent?.trim()))) break
    }
    assert.ok(more < 4, `the first "Hide online" is ${more + 1} tabs after the skip link`)
    if (width === 1280) {
      const top = await page.locator('#entries').evaluate(e => e.getBoundingClientRect().top + window.scrollY)
      assert.ok(top < 700, `the entries start ${Math.round(top)} px down the page`)
    }
    const main = await page.textContent('main')
    assert.doesNotMatch(main, /\(R\d+\)/, 'no rule codes in the words staff read')
    assert.doesNotMatch(main, /\d{4}-\d{2}-\d{2}|UTC/, 'no ISO or UTC dates')
    const nhs = page.locator('.app-banner dd .app-nowrap').first()
    assert.match(await nhs.textContent(), /^\d{3} \d{3} \d{4}$/)
    assert.equal(await nhs.evaluate(e => getComputedStyle(e).whiteSpace), 'nowrap')
    await check(page, `record-layout-${width}`)

    // The audit trail: UK time and plain words.
    await page.getByRole('link', { name: /Audit trail/ }).click()
    await page.getByRole('columnheader', { name: 'When (UK time)' }).waitFor()
    assert.doesNotMatch(await page.textContent('main'), /staff message send|record view staff|UTC/)
    await check(page, `audit-trail-${width}`)

    // Leo has his mother online: staff look "as" her, by name.
    await page.goto(`${base}/`)
    await page.getByLabel('NHS number, name, date of birth or postcode').fill('Rivers Leo')
    await page.getByRole('button', { name: 'Search' }).click()
    await page.getByRole('link', { name: /RIVERS, Leo/ }).click()
    await page.getByRole('link', { name: /^View as Hannah Rivers \(mother/ }).click()
    await page.getByRole('heading', { name: 'What Hannah Rivers (mother) sees online for Leo' }).waitFor()
    await check(page, `view-as-proxy-${width}`)
  })

  test(`${width} px: the record API page is in the site's style under its own security policy, with a skip link and this server's address`, async () => {
    const page = await newPage(width, { csp: true })
    const blocked = []
    page.on('console', m => { if (/Content Security Policy/.test(m.text())) blocked.push(m.text()) })
    await page.goto(`${base}/api`)
    await page.getByRole('heading', { name: 'Record API', level: 1 }).waitFor()
    assert.deepEqual(blocked, [], 'nothing on the page is blocked by its own policy')
    assert.ok(await page.locator('a.nhsuk-skip-link[href="#maincontent"]').count() === 1)
    const text = await page.textContent('main')
    assert.ok(text.includes(`${base}/api/v1/patients/`), `the example uses this server's address: ${text}`)
    assert.doesNotMatch(text, /:8080/)
    const font = await page.locator('h1').evaluate(e => getComputedStyle(e).fontFamily)
    assert.match(font, /Frutiger|Arial/)
    const plain = await newPage(width)
    await plain.goto(`${base}/api`)
    await check(plain, `record-api-${width}`)
  })

  test(`${width} px: before an idle session ends the page warns and offers more time, and a note not saved survives the timeout`, async () => {
    const page = await newPage(width)
    await signIn(page, 'nurse.patel')
    // The page's timers run on a controlled clock. The server is asked for the time left as
    // usual, except where the answer would take half an hour of real time: then it is scripted.
    await page.clock.install()
    let scripted = null
    await page.route('**/session', route => scripted === null
      ? route.continue()
      : route.fulfill({ status: scripted === 0 ? 401 : 200, contentType: 'application/json', body: JSON.stringify({ seconds_left: scripted }) }))
    await page.goto(`${base}/patients/${longRecord}/consultations/new`)
    const note = `Chest pain on exertion for two weeks, settles with rest (${width}).`
    await page.getByLabel('What happened').fill(note)
    const dialog = page.getByRole('dialog', { name: 'You will be signed out soon' })
    scripted = 100
    await page.clock.runFor(28 * 60 * 1000 + 1000)
    await dialog.waitFor()
    assert.match(await dialog.textContent(), /signed out in 2 minutes/)
    await check(page, `timeout-warning-${width}`)
    scripted = null
    await dialog.getByRole('button', { name: 'Stay signed in' }).click()
    await dialog.waitFor({ state: 'hidden' })
    assert.equal(await page.getByLabel('What happened').inputValue(), note, 'nothing lost by staying')
    // Later no one answers, and the session ends.
    scripted = 100
    await page.clock.runFor(28 * 60 * 1000 + 1000)
    await dialog.waitFor()
    scripted = 0
    await page.context().clearCookies()
    await page.clock.runFor(31 * 1000)
    await page.waitForURL(/\/sign-in\?timeout$/)
    assert.match(await page.textContent('main'), /signed out because nothing was done for 30 minutes/)
    await page.unroute('**/session')
    // Signed in again, the same form in the same tab has the note back, and says so.
    await signIn(page, 'nurse.patel')
    await page.goto(`${base}/patients/${longRecord}/consultations/new`)
    assert.equal(await page.getByLabel('What happened').inputValue(), note)
    await page.getByText('What you typed before and did not save has been put back').waitFor()
    await page.getByRole('button', { name: 'Save', exact: true }).click()
    await page.waitForURL(/consultation_saved$/)
    // Saved: the draft is gone, so it cannot be saved twice by mistake.
    await page.goto(`${base}/patients/${longRecord}/consultations/new`)
    assert.equal(await page.getByLabel('What happened').inputValue(), '')
  })

  test(`${width} px: staff pages speak one language: no rule codes, ISO or UTC dates, bare NHS numbers or "1 entries"; dates are NHS.UK date inputs`, async () => {
    const page = await newPage(width)
    await signIn(page, 'm.clarke')
    await page.goto(`${base}/patients/${longRecord}`)
    await page.getByRole('heading', { name: /PENDLETON, Arthur/ }).waitFor()
    const pages = ['/', `/patients/${longRecord}`, `/patients/${longRecord}/access`, `/patients/${longRecord}/proxies`,
      `/patients/${longRecord}/audit`, `/patients/${longRecord}/communications`, '/tasks', '/appointments', '/inbound',
      '/sars', '/sars/new', '/chat', '/reviews', '/reports', '/bulk-code', '/settings', '/messages/failed',
      '/reports/appointments']
    for (const path of pages) {
      const r = await page.goto(`${base}${path}`)
      assert.equal(r.status(), 200, path)
      const text = await page.locator('main').innerText()
      assert.doesNotMatch(text, /\(R\d+\)/, `${path}: a rule code in the words staff read`)
      assert.doesNotMatch(text, /\b\d{4}-\d{2}-\d{2}\b|\bUTC\b/, `${path}: an ISO or UTC date`)
      assert.doesNotMatch(text, /(?<![\d ])\d{10}(?![\d])/, `${path}: an NHS number not written 3-3-4`)
      assert.doesNotMatch(text, /\b1 (entries|patients|items|slots|times)\b/, `${path}: a count with the wrong noun`)
      assert.equal(await page.locator('input[type=date]').count(), 0, `${path}: a browser date picker`)
      assert.equal(await page.locator('input[type=checkbox]:not(.nhsuk-checkboxes__input), input[type=radio]:not(.nhsuk-radios__input)').count(), 0,
        `${path}: a checkbox or radio without NHS.UK markup`)
    }
    await page.goto(`${base}/reports`)
    await page.getByRole('group', { name: 'Every excluded patient reviewed by' }).getByLabel('Day').waitFor()
    await check(page, `reports-date-inputs-${width}`)
    await page.goto(`${base}/bulk-code`)
    await page.getByRole('group', { name: 'Registered on or after' }).getByLabel('Year').waitFor()
    await check(page, `bulk-date-inputs-${width}`)
    // The analyst's header names them once, with their role.
    const analyst = await newPage(width)
    await signIn(analyst, 'icb.analyst', '/icb')
    assert.doesNotMatch(await analyst.locator('header').innerText(), /\(ICB analyst\)\s*\(ICB analyst\)/)
    await check(analyst, `icb-header-${width}`)
  })

  test(`${width} px: a patient's record is in the NHS App's words: sections by name, results with their values`, async () => {
    const page = await newPage(width)
    await patientSignIn(page, 'hannah.rivers')
    await page.goto(`${base}/my/record`)
    const nav = page.getByRole('navigation', { name: 'Parts of the record' })
    for (const name of ['Consultations and events', 'Medicines', 'Test results', 'Vaccinations', 'Allergies and adverse reactions']) {
      assert.ok(await nav.getByRole('link', { name }).count() === 1, `the "${name}" section`)
    }
    assert.equal(await nav.getByRole('link', { name: 'Codes' }).count(), 0, '"Codes" means nothing to a patient')
    await nav.getByRole('link', { name: 'Test results' }).click()
    assert.doesNotMatch(await page.locator('main').innerText(), /: normal [a-zA-Z]/, 'a result has a value, not "normal mmol/L"')
    await check(page, `patient-record-sections-${width}`)
  })
}

// Issue 26: results over time, as a patient with diabetes and high blood pressure follows them,
// and as her GP sees them, at both widths, checked with axe.
for (const width of WIDTHS) {
  test(`${width} px: Hannah follows her results over time, and her GP sees the one held back`, async () => {
    const page = await newPage(width)
    await patientSignIn(page, 'hannah.rivers')
    await page.getByRole('link', { name: 'Your results over time' }).click()
    await page.getByRole('heading', { name: 'Your results over time', level: 1 }).waitFor()
    for (const name of ['HbA1c', 'Blood pressure', 'eGFR (kidney function)', 'Cholesterol', 'Weight', 'Body mass index (BMI)']) {
      await page.getByRole('link', { name, exact: true }).waitFor()
    }
    await check(page, `results-${width}`)

    await page.getByRole('link', { name: 'HbA1c', exact: true }).click()
    const chart = page.getByRole('img', { name: 'HbA1c over time, in mmol/mol' })
    await chart.waitFor()
    const box = await chart.boundingBox()
    assert.ok(box.width <= width - 30 && box.width >= 300, `the chart fits a ${width} px screen and is not shrunk: ${box.width}`)
    assert.equal(await page.locator('table tbody tr').count(), 6, 'every reading in the table')
    assert.match(await page.textContent('table'), /Above range/)
    await check(page, `result-hba1c-${width}`)

    await page.goto(`${base}/my/results/blood-pressure`)
    await page.getByRole('img', { name: 'Blood pressure over time, in mmHg' }).waitFor()
    await check(page, `result-blood-pressure-${width}`)

    // The eGFR held back until it is discussed: not in her table, her chart or its scale.
    await page.goto(`${base}/my/results/egfr`)
    await page.getByRole('img', { name: /eGFR/ }).waitFor()
    assert.equal(await page.locator('table tbody tr').count(), 3)
    assert.doesNotMatch(await page.textContent('main'), /\b52\b/)

    const staff = await newPage(width)
    await signIn(staff, 'dr.hughes')
    await staff.getByLabel('NHS number, name, date of birth or postcode').fill('Hannah Rivers')
    await staff.getByRole('button', { name: 'Search' }).click()
    await staff.getByRole('link', { name: /RIVERS, Hannah/ }).click()
    await staff.getByRole('link', { name: 'Results over time' }).click()
    await staff.getByRole('link', { name: 'eGFR (kidney function)' }).click()
    await staff.getByRole('img', { name: /eGFR/ }).waitFor()
    assert.equal(await staff.locator('table tbody tr').count(), 4)
    assert.match(await staff.textContent('table'), /52 mL\/min\/1.73m2[\s\S]*Not shown: /)
    await check(staff, `staff-result-egfr-${width}`)
  })
}

// Issue 26: the care plan Hannah helps write, at both widths, checked with axe.
for (const width of WIDTHS) {
  test(`${width} px: Hannah reads her care plan and adds a home reading to it`, async () => {
    const page = await newPage(width)
    await patientSignIn(page, 'hannah.rivers')
    await page.getByRole('link', { name: 'Your care plans' }).click()
    await page.getByRole('heading', { name: 'Care plan: Type 2 diabetes and high blood pressure' }).waitFor()
    const main = await page.textContent('main')
    assert.match(main, /Walk to work three days a week\s*Added by you/)
    assert.doesNotMatch(main, /kidney clinic/, 'the part held back until it is discussed')
    await check(page, `care-plans-${width}`)

    await page.getByRole('link', { name: /Add a goal, a note or a home reading/ }).click()
    await page.getByRole('heading', { name: /Add to this care plan/ }).waitFor()
    await page.getByLabel('A reading I took at home').check()
    await page.getByLabel('For a reading: what you measured').selectOption('blood-pressure')
    await page.getByLabel('The reading').fill('148')
    await page.getByRole('button', { name: 'Add to the care plan' }).click()
    await page.getByText('There is a problem').waitFor()
    assert.match(await page.title(), /^Error: /)
    await check(page, `care-plan-add-error-${width}`)
    await page.getByLabel('The reading').fill(width === 375 ? '131/83' : '133/85')
    await page.getByRole('button', { name: 'Add to the care plan' }).click()
    await page.getByText('Added to the care plan.').waitFor()

    await page.goto(`${base}/my/results/blood-pressure`)
    assert.match(await page.textContent('table'), width === 375 ? /131\/83 mmHg\s*Home reading/ : /133\/85 mmHg\s*Home reading/)
    await check(page, `result-blood-pressure-home-${width}`)
  })
}

for (const width of WIDTHS) {
  test(`${width} px: reception books a patient who phoned after checking who they are, records who did not come, and the practice manager reads the online capacity report`, async () => {
    const desk = await newPage(width)
    await signIn(desk, 'j.baker')
    await desk.goto(`${base}/appointments`)
    await desk.getByRole('link', { name: /^Book the .* slot with / }).first().click()
    await desk.getByRole('heading', { name: 'Book an appointment for a patient' }).waitFor()
    await desk.getByRole('button', { name: 'Continue' }).click()
    await desk.getByText('There is a problem').waitFor()
    assert.match(await desk.title(), /^Error: /)
    await check(desk, `staff-book-error-${width}`)
    await desk.getByLabel("The patient's NHS number").fill(longRecord)
    await desk.getByRole('button', { name: 'Continue' }).click()
    await desk.getByRole('heading', { name: 'Is this the patient?' }).waitFor()
    assert.match(await desk.textContent('main'), /PENDLETON, Arthur/)
    await check(desk, `staff-book-check-${width}`)
    await desk.getByRole('button', { name: /Book this appointment for PENDLETON, Arthur/ }).click()
    await desk.getByText('Appointment booked.').waitFor()
    assert.match(await desk.textContent('main'), /PENDLETON, Arthur\s*Booked by Jordan Baker at the practice/)
    // Last week: record that a patient did not come.
    await desk.getByRole('link', { name: 'Earlier week' }).click()
    const dna = desk.getByRole('button', { name: /^Did not attend\s*: the / }).first()
    const name = await dna.textContent()
    await dna.click()
    await desk.waitForURL(/\/appointments\?from=/)
    await desk.getByText('Did not attend', { exact: true }).first().waitFor()
    assert.ok(name.includes('appointment with'), name)
    await check(desk, `appointment-book-attendance-${width}`)

    const manager = await newPage(width)
    await signIn(manager, 'm.clarke')
    await manager.getByRole('link', { name: 'Online capacity' }).click()
    await manager.getByRole('heading', { name: 'Online appointment capacity' }).waitFor()
    const main = await manager.textContent('main')
    assert.match(main, /Booked online\s*\d+, of which \d+ not attended/)
    assert.match(main, /Week starting Monday/)
    assert.doesNotMatch(main, /PENDLETON|\d{3} \d{3} \d{4}/, 'counts only')
    await check(manager, `capacity-report-${width}`)
    await manager.getByLabel('Weeks (1 to 26)').fill('2')
    await manager.getByRole('button', { name: 'Show these weeks' }).click()
    await manager.waitForURL(/weeks=2/)
    assert.equal(await manager.locator('table caption').count(), 2, 'two weeks, one table each')
    const csv = await manager.request.get(`${base}/reports/appointments.csv?weeks=2`)
    assert.equal(csv.status(), 200)
    assert.match(await csv.text(), /^week_starting,clinician,appointment_type,slots_offered,/)

    const analyst = await newPage(width)
    await signIn(analyst, 'icb.analyst', '/icb')
    await analyst.getByRole('link', { name: 'ICB online appointments' }).click()
    await analyst.getByRole('heading', { name: 'Online appointments across the ICB' }).waitFor()
    assert.match(await analyst.textContent('main'), /Riverside Medical Practice \(Y90210\)/)
    await check(analyst, `icb-capacity-${width}`)
  })
}
