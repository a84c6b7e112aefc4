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
