// Progressive enhancement only: every page works without this file.
// NHS.UK frontend starts its components only on a page that says the browser supports it (its
// own page template does this with an inline script, which this site's content security policy
// does not run). A module script runs only where ES modules do, which is what "supported" means.
import { initAll } from '/assets/nhsuk-frontend.min.js'
document.body.classList.add('js-enabled', 'nhsuk-frontend-supported')
initAll()

// The unread staff messages count in the header: refreshed every 20 seconds while the page is
// open. Without JavaScript it is up to date on every page load.
const unread = document.querySelector('[data-unread]')
if (unread) {
  setInterval(async () => {
    try {
      const res = await fetch('/chat/unread', { credentials: 'same-origin', headers: { accept: 'application/json' } })
      if (!res.ok) return
      const { unread: n } = await res.json()
      unread.textContent = n > 0 ? ` (${n} unread)` : ''
    } catch (e) { /* offline: keep the last count */ }
  }, 20000)
}

// WCAG 2.2.1 (timing adjustable): a staff session ends after a time without activity. Two
// minutes before, a dialog says so and offers to stay signed in; when the time is up the page
// goes to sign-in. The time left is asked of the server (asking is not activity), so work in
// another tab counts. Forms marked data-draft keep what was typed in this tab's session storage
// until the server says the form was saved (data-draft-done), so a note is not lost to a timeout.
const WARN = 120
const idle = Number(document.body.dataset.idleSeconds || 0)
const dialog = document.getElementById('app-timeout')
if (idle > 0 && dialog) {
  let timer
  const left = async () => {
    try {
      const res = await fetch('/session', { credentials: 'same-origin', headers: { accept: 'application/json' } })
      if (res.status === 401) return 0
      if (!res.ok) return null
      return (await res.json()).seconds_left
    } catch (e) { return null }
  }
  const words = s => s > 90 ? `in ${Math.round(s / 60)} minutes` : s > 50 ? 'in 1 minute' : 'in less than a minute'
  const expired = () => { saveDrafts(); window.location.assign('/sign-in?timeout') }
  const check = async () => {
    const s = await left()
    if (s === null) { timer = setTimeout(check, 30000); return }
    if (s <= 0) { expired(); return }
    if (s > WARN + 5) {
      if (dialog.open) dialog.close()
      timer = setTimeout(check, (s - WARN) * 1000)
      return
    }
    saveDrafts()
    dialog.querySelector('[data-timeout-left]').textContent = words(s)
    if (!dialog.open) dialog.showModal()
    timer = setTimeout(check, Math.min(s, 30) * 1000)
  }
  dialog.querySelector('[data-timeout-stay]').addEventListener('click', async () => {
    const csrf = document.querySelector('#sign-out-form input[name=_csrf]')?.value || ''
    const res = await fetch('/session/keep-alive', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ _csrf: csrf })
    }).catch(() => null)
    if (!res || !res.ok) { expired(); return }
    dialog.close()
    clearTimeout(timer)
    timer = setTimeout(check, (idle - WARN) * 1000)
  })
  dialog.addEventListener('cancel', e => e.preventDefault())
  timer = setTimeout(check, Math.max(idle - WARN, 1) * 1000)
}

// Drafts: the fields of a form marked data-draft="<key>", kept in this tab only.
const draftKey = k => `caldicott-draft:${k}`
function fieldsOf (form) {
  return [...form.elements].filter(e => e.name && e.name !== '_csrf' && e.type !== 'hidden' && e.type !== 'submit' && e.type !== 'button')
}
function saveDrafts () {
  for (const form of document.querySelectorAll('form[data-draft]')) {
    const values = fieldsOf(form).map(e => [e.name, e.type === 'checkbox' || e.type === 'radio' ? (e.checked ? e.value : null) : e.value, e.type])
    if (values.some(([, v, t]) => t !== 'checkbox' && t !== 'radio' && v)) {
      sessionStorage.setItem(draftKey(form.dataset.draft), JSON.stringify(values))
    }
  }
}
for (const done of document.querySelectorAll('[data-draft-done]')) sessionStorage.removeItem(draftKey(done.dataset.draftDone))
for (const form of document.querySelectorAll('form[data-draft]')) {
  const kept = sessionStorage.getItem(draftKey(form.dataset.draft))
  const empty = fieldsOf(form).every(e => e.type === 'checkbox' || e.type === 'radio' || e.tagName === 'SELECT' || !e.value)
  if (kept && empty) {
    const values = JSON.parse(kept)
    for (const e of fieldsOf(form)) {
      const mine = values.filter(([n]) => n === e.name)
      if (e.type === 'checkbox' || e.type === 'radio') e.checked = mine.some(([, v]) => v === e.value)
      else if (mine.length) e.value = mine[0][1] ?? ''
    }
    const note = document.createElement('div')
    note.className = 'nhsuk-inset-text'
    note.setAttribute('role', 'status')
    note.innerHTML = '<span class="nhsuk-u-visually-hidden">Information: </span><p></p>'
    note.querySelector('p').textContent = 'What you typed before and did not save has been put back. Check it, then save it.'
    form.prepend(note)
  }
  let pending
  form.addEventListener('input', () => { clearTimeout(pending); pending = setTimeout(saveDrafts, 500) })
  form.addEventListener('submit', saveDrafts)
}
