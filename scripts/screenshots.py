"""Seeds a running Gatehouse and screenshots its admin UI through chromedriver's WebDriver HTTP API (urllib only).

Run by scripts/screenshots, which starts the server and chromedriver and says what is seeded and shot."""

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE, TOKEN, DRIVER, OUTDIR = (os.environ[k] for k in ("BASE", "TOKEN", "DRIVER", "OUTDIR"))
PASSWORD = "correct horse battery staple"
BROWSERS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
]
NAMES = """Ada Lovelace, Grace Hopper, Alan Turing, Katherine Johnson, Linus Svensson, Margaret Hamilton,
Tim Berners-Lee, Barbara Liskov, Dennis Ritchie, Frances Allen, Ken Thompson, Radia Perlman, Edsger Dijkstra,
Hedy Lamarr, John McCarthy, Sophie Wilson, Niklaus Wirth, Shafi Goldwasser, Donald Knuth, Anita Borg,
Claude Shannon, Jean Bartik, Leslie Lamport, Karen Spärck Jones, Guido van Rossum"""
USERS = [(n.strip(), n.strip().split()[0].lower() + "." + n.strip().split()[-1].lower().replace("ä", "ae")
          + "@example.com") for n in NAMES.split(",")]


def call(method, url, body=None, headers=None, ok=(200, 201, 202, 204), soft=False):
    """Sends JSON and returns the decoded answer ({} if empty); another status raises, or with `soft` warns."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"content-type": "application/json", **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    if status not in ok:
        if not soft:
            raise RuntimeError(f"{method} {url} -> {status}: {text[:300]!r}")
        print(f"warning: seeding {method} {url} -> {status}: {text[:200]!r}", file=sys.stderr)
        return {}
    return json.loads(text) if text.strip() else {}


def admin(method, path, body=None, soft=True):
    """The admin API with the bootstrap token; only soft, so that an older binary still gets its pictures."""
    headers = {"authorization": f"Bearer {TOKEN}", "user-agent": "curl/8.5.0"}
    return call(method, BASE + "/admin/api/v1" + path, body, headers, soft=soft)


def end_user(path, body, browser, ok=(200, 201, 202, 204)):
    return call("POST", f"{BASE}/t/acme/api/v1/{path}", body, {"user-agent": browser}, ok=ok, soft=True)


def seed():
    admin("POST", "/tenants", {"slug": "acme", "name": "Acme Shop"}, soft=False)
    admin("PATCH", "/tenants/acme", {"settings": {"branding": {"primary_color": "#c2410c"}}})
    admin("POST", "/tenants", {"slug": "globex", "name": "Globex Corporation"})
    t = "/tenants/acme"
    admin("POST", t + "/roles", {"name": "support", "permissions": ["users:read", "orders:read"]})
    hook = admin("POST", t + "/webhooks", {"url": f"http://127.0.0.1:{os.environ['CLOSED_PORT']}/hooks/gatehouse",
                                           "events": ["user.created", "user.disabled", "user.login_failed"],
                                           "description": "CRM sync"})
    admin("POST", t + "/clients", {"name": "Web shop", "type": "confidential",
                                   "redirect_uris": ["https://shop.acme.test/auth/callback"]})
    ids = {}
    for i, (name, email) in enumerate(USERS):
        body = {"email": email, "password": PASSWORD, "email_verified": i not in (12, 24), "name": name}
        if i in (1, 5):
            body["roles"] = ["support"]
        ids[email] = admin("POST", t + "/users", body).get("id")
    for email in (USERS[8][1], USERS[20][1]):  # odd ones sign in below
        admin("POST", f"{t}/users/{ids[email]}/disable", {})
    admin("POST", f"{t}/webhooks/{hook.get('id')}/ping")
    for i in range(10):
        email = USERS[i * 2][1] if i % 3 else "someone@unknown.example"
        end_user("login", {"email": email, "password": "Summer2024!"}, BROWSERS[i % 3], ok=(400, 401, 403))
    for i in range(10):
        end_user("login", {"email": USERS[i * 2 + 1][1], "password": PASSWORD}, BROWSERS[i % 3])
    for email in (USERS[0][1], USERS[4][1], USERS[12][1]):
        end_user("password/forgot", {"email": email}, BROWSERS[0])
    variants = [{"sku": f"MUG-{c[:3].upper()}", "price": 1200, "option_values": {"colour": c}, "stock": n}
                for c, n in (("blue", 42), ("red", 3))]
    admin("POST", t + "/products", {"title": "Enamel Mug", "handle": "enamel-mug", "status": "active",
                                    "options": ["colour"], "variants": variants})
    admin("POST", t + "/discount-codes", {"code": "WELCOME10", "kind": "percent", "value": 10})
    admin("POST", "/tenants/globex/users", {"email": "hank.scorpio@globex.example", "password": PASSWORD,
                                            "email_verified": True, "name": "Hank Scorpio"})


class Browser:
    def __init__(self):
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1280,900", f"--user-data-dir={os.environ['PROFILE']}"]
        options = {"args": args}
        if os.path.exists("/usr/bin/chromium"):
            options["binary"] = "/usr/bin/chromium"
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}
        self.session = call("POST", DRIVER + "/session", caps)["value"]["sessionId"]

    def wd(self, method, path, body=None):
        return call(method, f"{DRIVER}/session/{self.session}{path}", body)["value"]

    def cdp(self, cmd, params):
        return self.wd("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params})

    def js(self, script):
        return self.wd("POST", "/execute/sync", {"script": script, "args": []})

    def until(self, script, what):
        for _ in range(200):
            if self.js(script):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} (at {self.js('return location.href')})")

    def find(self, css):
        self.until(f"return document.querySelector({json.dumps(css)}) !== null", f"no element {css}")
        return next(iter(self.wd("POST", "/element", {"using": "css selector", "value": css}).values()))

    def goto(self, path):
        self.wd("POST", "/url", {"url": BASE + path})
        self.until("return document.readyState === 'complete'", f"{path} did not load")

    def sign_in(self):
        self.goto("/admin/login")
        self.wd("POST", f"/element/{self.find('#email')}/value", {"text": "ops@example.com"})
        self.wd("POST", f"/element/{self.find('#password')}/value", {"text": "a long passphrase"})
        self.wd("POST", f"/element/{self.find('button[type=submit]')}/click", {})
        self.until("return !location.pathname.endsWith('/login')", "admin sign-in failed")

    def shot(self, path, name, width=1280, dark=False):
        scheme = "dark" if dark else "light"
        self.cdp("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
        self.cdp("Emulation.setDeviceMetricsOverride", metrics)
        self.goto(path)
        height = self.js("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
        metrics["height"] = max(900 if width >= 600 else 844, min(int(height), 16000))
        self.cdp("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.3)
        png = base64.b64decode(self.cdp("Page.captureScreenshot", {"format": "png"})["data"])
        with open(os.path.join(OUTDIR, name), "wb") as f:
            f.write(png)
        title = self.js("return document.title")
        print(f"{name}: {path} at {width}x{metrics['height']} ({scheme}) '{title}', {len(png)} bytes")

    def quit(self):
        call("DELETE", f"{DRIVER}/session/{self.session}")


def main():
    started = time.time()
    seed()
    time.sleep(1)  # let the outbox make its first (failing) webhook attempts
    print(f"seeded in {time.time() - started:.0f} s")
    browser = Browser()
    try:
        browser.sign_in()
        browser.shot("/admin", "dashboard.png")
        browser.shot("/admin/tenants/acme", "overview.png")
        browser.shot("/admin/tenants/acme/users", "users.png")
        browser.shot("/admin/tenants/acme/audit", "audit.png")
        browser.shot("/admin/tenants/acme/webhooks", "webhooks-390.png", width=390)
        browser.shot("/admin/tenants/acme/users", "users-390.png", width=390)
        browser.shot("/admin", "dashboard-dark.png", dark=True)
    finally:
        browser.quit()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one readable line instead of a traceback through urllib
        print(f"screenshots: {e}", file=sys.stderr)
        sys.exit(1)
