// A login-world plugin: refuses sign-ups from blocked email domains and puts the user's `plan` custom field into
// their tokens as a `plan` claim. Settings come from config.json, embedded at build time as globalThis.CONFIG.
import { log } from 'gatehouse:plugin/host@0.1.0';

const config = globalThis.CONFIG ?? { blocked_domains: [], plan_field: 'plan' };
const blocked = new Set(config.blocked_domains.map((d) => d.toLowerCase()));

function domainOf(email) {
  const at = email.lastIndexOf('@');
  return at < 0 ? '' : email.slice(at + 1).toLowerCase();
}

// Field values are JSON text.
function field(user, key) {
  const f = user.fields.find((f) => f.key === key);
  return f === undefined ? undefined : JSON.parse(f.value);
}

export function preRegistration(user, request) {
  const domain = domainOf(user.email);
  if (blocked.has(domain)) {
    log('info', `refused sign-up from ${domain} (ip ${request.ip})`);
    return { tag: 'deny', val: `Sign-ups with ${domain} addresses are not accepted.` };
  }
  return { tag: 'allow' };
}

export function postLogin(user, request) {
  const plan = field(user, config.plan_field) ?? 'free';
  log('debug', `user ${user.id} signs in with plan ${plan}`);
  return {
    tag: 'modify',
    val: { claims: [{ key: 'plan', value: JSON.stringify(plan) }], requireMfa: false, fields: [] },
  };
}
