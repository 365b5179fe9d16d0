#!/usr/bin/env python3
"""Prepares a running Gatehouse for scripts/api-fuzz and prints the credentials it made, as JSON.

An operator API token is created with the bootstrap token (which is itself a deletable row, so the fuzzer must not
run on it), a tenant `acme` with a user, and a first-party OAuth client; the user signs in through the hosted
pages and the authorization code flow, so the end-user API can be fuzzed with an `account:read account:write`
access token as a real app would hold one.

    api_fuzz_setup.py BASE_URL BOOTSTRAP_TOKEN
"""
import base64
import hashlib
import json
import re
import secrets
import sys
import urllib.parse

import requests

BASE, BOOTSTRAP = sys.argv[1], sys.argv[2]
REDIRECT = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery staple"


def admin(method, path, token, body=None):
    r = requests.request(method, BASE + path, headers={"Authorization": f"Bearer {token}"}, json=body, timeout=30)
    if r.status_code >= 300:
        sys.exit(f"{method} {path}: {r.status_code} {r.text}")
    return r.json()


token = admin("POST", "/admin/api/v1/tokens", BOOTSTRAP, {"name": "api-fuzz", "scope": "operator"})["token"]
admin("POST", "/admin/api/v1/tenants", token, {"slug": "acme", "name": "Acme"})
admin("POST", "/admin/api/v1/tenants/acme/users", token,
      {"email": "ada@example.com", "password": PASSWORD, "email_verified": True, "name": "Ada"})
client = admin("POST", "/admin/api/v1/tenants/acme/clients", token, {
    "name": "Fuzz app", "type": "confidential", "first_party": True, "redirect_uris": [REDIRECT],
    "scopes": ["openid", "email", "profile", "account:read", "account:write"],
})

# The authorization code flow in a cookie jar: authorize → hosted sign-in → back to the redirect URI with a code.
browser = requests.Session()
verifier = secrets.token_urlsafe(48)
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
url = BASE + "/t/acme/oauth2/authorize?" + urllib.parse.urlencode({
    "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
    "scope": "openid account:read account:write", "state": "s", "code_challenge": challenge,
    "code_challenge_method": "S256",
})
for _ in range(10):
    if url.startswith(REDIRECT):
        break
    r = browser.get(url, allow_redirects=False, timeout=30)
    if r.is_redirect:
        url = urllib.parse.urljoin(BASE, r.headers["location"])
        continue
    field = lambda name: re.search(rf'name="{name}" value="([^"]*)"', r.text).group(1).replace("&#x2f;", "/").replace("&amp;", "&")
    posted = browser.post(url.split("?")[0], data={
        "csrf_token": field("csrf_token"), "return_to": field("return_to"),
        "email": "ada@example.com", "password": PASSWORD,
    }, allow_redirects=False, timeout=30)
    url = urllib.parse.urljoin(BASE, posted.headers["location"])
code = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["code"][0]
tokens = requests.post(BASE + "/t/acme/oauth2/token", data={
    "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
}, auth=(client["client_id"], client["client_secret"]), timeout=30).json()
print(json.dumps({
    "operator_token": token, "account_token": tokens["access_token"],
    "client": f'{client["client_id"]}:{client["client_secret"]}',
}))
