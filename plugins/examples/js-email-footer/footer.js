// An email-world plugin: appends a footer to every mail, in both the HTML and the text part.
import { log } from 'gatehouse:plugin/host@0.1.0';

const footer = globalThis.CONFIG?.footer ?? 'Sent by Gatehouse on behalf of Acme.';

function escapeHtml(s) {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

export function render(message) {
  log('debug', `adding the footer to a ${message.template} mail`);
  const html = message.html.includes('</body>')
    ? message.html.replace('</body>', `<p class="footer">${escapeHtml(footer)}</p></body>`)
    : `${message.html}<p class="footer">${escapeHtml(footer)}</p>`;
  return { ...message, html, text: `${message.text}\n\n-- \n${footer}\n` };
}
