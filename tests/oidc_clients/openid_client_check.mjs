// Drives a running Gatehouse tenant with the `openid-client` library (v6), the way a Node app would, and fails
// (exit 1) on the first check that does not hold. Run by tests/it/oidc.rs; settings come from the environment:
// ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_URI, EMAIL, PASSWORD, CC_SCOPE.
import * as oidc from 'openid-client';
import assert from 'node:assert/strict';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
const issuer = env('ISSUER');
const redirectUri = env('REDIRECT_URI');
const ok = (name) => console.log(`ok - ${name}`);

// A browser stand-in: a cookie jar and manual redirects.
const jar = new Map();
async function browse(url, init = {}) {
  const headers = new Headers(init.headers || {});
  if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  for (const c of res.headers.getSetCookie()) {
    const pair = c.split(';')[0];
    const i = pair.indexOf('=');
    const value = pair.slice(i + 1);
    if (value === '' || /max-age=0/i.test(c)) jar.delete(pair.slice(0, i));
    else jar.set(pair.slice(0, i), value);
  }
  return res;
}

const hidden = (html, name) => {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  assert.ok(m, `form field ${name} on the page`);
  return m[1]
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCharCode(parseInt(h, 16)))
    .replace(/&#([0-9]+);/g, (_, d) => String.fromCharCode(parseInt(d, 10)))
    .replaceAll('&quot;', '"').replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');
};

// Follows redirects like a browser until one leads to the client's redirect URI; signs in and consents on the way.
async function signInAndConsent(authUrl) {
  let url = authUrl.href;
  for (let step = 0; step < 12; step++) {
    if (url.startsWith(redirectUri)) return new URL(url);
    const res = await browse(url);
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get('location'), url).href;
      continue;
    }
    const html = await res.text();
    assert.equal(res.status, 200, `page ${url} answered ${res.status}: ${html.slice(0, 300)}`);
    const form = new URLSearchParams();
    let action;
    if (html.includes('name="password"')) {
      action = new URL(url); action.search = '';
      form.set('csrf_token', hidden(html, 'csrf_token'));
      form.set('return_to', hidden(html, 'return_to'));
      form.set('email', process.env.EMAIL);
      form.set('password', process.env.PASSWORD);
    } else if (html.includes('name="decision"')) {
      action = new URL(url); action.search = '';
      form.set('csrf_token', hidden(html, 'csrf_token'));
      form.set('request', hidden(html, 'request'));
      form.set('decision', 'allow');
      ok('consent page shown for a third-party client');
    } else {
      throw new Error(`unexpected page at ${url}: ${html.slice(0, 400)}`);
    }
    const posted = await browse(action.href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
    assert.ok(posted.status >= 300 && posted.status < 400, `form at ${action.href} answered ${posted.status}: ${(await posted.text()).slice(0, 300)}`);
    url = new URL(posted.headers.get('location'), action).href;
  }
  throw new Error('too many redirects');
}

const expectOAuthError = async (promise, code, what) => {
  try {
    await promise;
  } catch (err) {
    const got = err.error || err.code || err.cause?.error;
    assert.equal(got, code, `${what}: expected ${code}, got ${got} (${err.message})`);
    return;
  }
  throw new Error(`${what}: expected ${code}, but it succeeded`);
};

const config = await oidc.discovery(
  new URL(issuer),
  env('CLIENT_ID'),
  { client_secret: env('CLIENT_SECRET') },
  oidc.ClientSecretBasic(env('CLIENT_SECRET')),
  { execute: [oidc.allowInsecureRequests] },
);
assert.equal(config.serverMetadata().issuer, issuer);
ok('discovery');

// Authorization code + PKCE through the hosted login (and consent) pages.
const verifier = oidc.randomPKCECodeVerifier();
const challenge = await oidc.calculatePKCECodeChallenge(verifier);
const state = oidc.randomState();
const nonce = oidc.randomNonce();
const authUrl = oidc.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email offline_access',
  code_challenge: challenge,
  code_challenge_method: 'S256',
  state,
  nonce,
});
const callback = await signInAndConsent(authUrl);
const tokens = await oidc.authorizationCodeGrant(config, callback, {
  pkceCodeVerifier: verifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
assert.equal(claims.iss, issuer);
assert.equal(claims.aud, env('CLIENT_ID'));
assert.equal(claims.email, process.env.EMAIL);
assert.ok(claims.sid && claims.auth_time && claims.at_hash, 'sid, auth_time, at_hash in the ID token');
assert.ok(tokens.refresh_token, 'a refresh token');
ok('authorization code + PKCE, ID token validated (signature, iss, aud, nonce, at_hash)');

const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
assert.equal(info.sub, claims.sub);
assert.equal(info.email, process.env.EMAIL);
ok('userinfo');

const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
assert.ok(refreshed.access_token && refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token);
assert.equal(refreshed.claims().sub, claims.sub);
ok('refresh (rotated)');

await expectOAuthError(oidc.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant', 'reusing a rotated refresh token');
await expectOAuthError(oidc.refreshTokenGrant(config, refreshed.refresh_token), 'invalid_grant', 'the family after reuse');
const afterReuse = await oidc.tokenIntrospection(config, refreshed.access_token);
assert.equal(afterReuse.active, false, 'access tokens of a revoked family are inactive');
ok('refresh reuse revokes the whole family');

const cc = await oidc.clientCredentialsGrant(config, { scope: env('CC_SCOPE') });
assert.ok(cc.access_token);
assert.equal(cc.scope, env('CC_SCOPE'));
ok('client_credentials');

const intro = await oidc.tokenIntrospection(config, cc.access_token);
assert.equal(intro.active, true);
assert.equal(intro.client_id, env('CLIENT_ID'));
assert.equal(intro.scope, env('CC_SCOPE'));
ok('introspection of an active token');

await oidc.tokenRevocation(config, cc.access_token);
const revoked = await oidc.tokenIntrospection(config, cc.access_token);
assert.equal(revoked.active, false);
ok('revocation (access token)');

const endSession = oidc.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: env('POST_LOGOUT_URI'),
  state: 'bye',
});
const out = await browse(endSession.href);
assert.ok(out.status >= 300 && out.status < 400, `end session answered ${out.status}`);
const back = new URL(out.headers.get('location'));
assert.equal(back.origin + back.pathname, env('POST_LOGOUT_URI'));
assert.equal(back.searchParams.get('state'), 'bye');
ok('end-session URL signs out and returns to the client');

console.log('all checks passed');
