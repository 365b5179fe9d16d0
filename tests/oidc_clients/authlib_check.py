"""Drives a running Gatehouse tenant with Python's authlib the way a Python app would: authorization code + PKCE
through the hosted login page (ID token validated with authlib's CodeIDToken: signature via JWKS, iss, aud,
nonce, at_hash), userinfo, then client_credentials. Exits 1 on the first failed check.

Settings come from the environment: ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, EMAIL, PASSWORD, CC_SCOPE.
Run by tests/it/oidc.rs.
"""

import html
import os
import re
import sys
import warnings
from urllib.parse import urljoin

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

warnings.simplefilter("ignore")  # authlib.jose deprecation notices are not our business here
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

ISSUER = os.environ["ISSUER"]
CLIENT_ID = os.environ["CLIENT_ID"]
SECRET = os.environ["CLIENT_SECRET"]
REDIRECT = os.environ["REDIRECT_URI"]


def ok(name):
    print(f"ok - {name}", flush=True)


def field(page, name):
    m = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert m, f"form field {name} missing"
    return html.unescape(m.group(1))


meta = requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=10).json()
assert meta["issuer"] == ISSUER, meta["issuer"]
jwks = requests.get(meta["jwks_uri"], timeout=10).json()
ok("discovery and JWKS")

# Authorization code + PKCE.
client = OAuth2Session(
    CLIENT_ID,
    SECRET,
    scope="openid profile email",
    redirect_uri=REDIRECT,
    code_challenge_method="S256",
    token_endpoint_auth_method="client_secret_post",
)
verifier = generate_token(64)
nonce = generate_token(20)
uri, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)

browser = requests.Session()
url = uri
callback = None
for _ in range(12):
    if url.startswith(REDIRECT):
        callback = url
        break
    r = browser.get(url, allow_redirects=False, timeout=10)
    if 300 <= r.status_code < 400:
        url = urljoin(url, r.headers["location"])
        continue
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    assert 'name="password"' in r.text, f"expected the login page at {url}"
    action = url.split("?")[0]
    posted = browser.post(
        action,
        data={
            "csrf_token": field(r.text, "csrf_token"),
            "return_to": field(r.text, "return_to"),
            "email": os.environ["EMAIL"],
            "password": os.environ["PASSWORD"],
        },
        allow_redirects=False,
        timeout=10,
    )
    assert 300 <= posted.status_code < 400, (posted.status_code, posted.text[:300])
    url = urljoin(action, posted.headers["location"])
assert callback, "never reached the redirect URI"

token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
claims = jwt.decode(
    token["id_token"],
    JsonWebKey.import_key_set(jwks),
    claims_cls=CodeIDToken,
    claims_options={"iss": {"essential": True, "value": ISSUER}},
    claims_params={"nonce": nonce, "client_id": CLIENT_ID, "access_token": token["access_token"]},
)
claims.validate()
assert claims["email"] == os.environ["EMAIL"]
ok("authorization code + PKCE; ID token validated (signature, iss, aud, nonce, at_hash)")

info = client.get(meta["userinfo_endpoint"], timeout=10).json()
assert info["sub"] == claims["sub"], info
ok("userinfo")

# The client is registered with client_secret_post, the only method the server accepts for it.
cc = OAuth2Session(CLIENT_ID, SECRET, scope=os.environ["CC_SCOPE"], token_endpoint_auth_method="client_secret_post")
cc_token = cc.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
assert cc_token["token_type"].lower() == "bearer"
assert cc_token["scope"] == os.environ["CC_SCOPE"], cc_token
access = jwt.decode(cc_token["access_token"], JsonWebKey.import_key_set(jwks))
access.validate()
assert access["client_id"] == CLIENT_ID and access["sub"] == CLIENT_ID
ok("client_credentials (JWT verified against JWKS)")

print("all checks passed")
sys.exit(0)
