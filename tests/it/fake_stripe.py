#!/usr/bin/env python3
"""Fake Stripe server for Gatehouse integration tests (standard library only).

Run `python3 fake_stripe.py`: it binds 127.0.0.1 on an ephemeral port, prints
exactly one line `listening <port>` to stdout and serves until killed. Point
the Stripe base URL of the server under test at http://127.0.0.1:<port>.

Stripe API subset (needs `Authorization: Bearer sk_...`, form-encoded bodies,
honours `Idempotency-Key` on POST per key + path):
  POST /v1/payment_intents      amount, currency, metadata[...]
  GET  /v1/payment_intents/{id}
  POST /v1/payment_intents/{id}/cancel   (a succeeded intent cannot be cancelled)
  POST /v1/refunds              payment_intent, amount (optional), metadata[...]

Webhook events are only QUEUED by the API and control endpoints; nothing is
sent until the test calls POST /_control/deliver, so tests stay deterministic.

Test control (no auth, JSON in and out):
  POST /_control/config               {"webhook_url", "webhook_secret"}
  POST /_control/down                 {"down": bool}   -> /v1/* answers 503
  GET  /_control/requests             every /v1 request received
  POST /_control/intents/{id}/succeed {"amount"?, "currency"?} (event copy only)
  POST /_control/intents/{id}/fail
  POST /_control/events               {"event": {...}} queue an arbitrary event
  POST /_control/deliver              {"signature"?: good|bad|stale|multi, "repeat"?: n}
  POST /_control/redeliver            {"event_id", "signature"?}
"""
import copy, hashlib, hmac, json, re, secrets, sys, threading, time, traceback
import urllib.error, urllib.parse, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_VERSION = "2024-06-20"
SIGNATURE_MODES = ("good", "bad", "stale", "multi")
# Never route webhook deliveries through an HTTP proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.webhook_url = None
        self.webhook_secret = ""
        self.down = False
        self.intents = {}      # payment intent id -> intent object
        self.refunds = {}      # payment intent id -> [refund objects]
        self.requests = []     # log of every /v1 request
        self.idempotent = {}   # (idempotency key, path) -> (status, body bytes)
        self.queue = []        # events waiting for /_control/deliver
        self.delivered = {}    # event id -> (type, exact payload bytes)


S = State()


def new_id(prefix):
    return f"{prefix}_{secrets.token_hex(12)}"


def now():
    return int(time.time())


def err(status, message, type_="invalid_request_error", **extra):
    error = {"type": type_, "message": message}
    error.update(extra)
    return status, {"error": error}


def make_event(type_, obj):
    return {"id": new_id("evt"), "object": "event", "type": type_,
            "created": now(), "livemode": False, "api_version": API_VERSION,
            "data": {"object": obj}}


def metadata_of(form):
    return {k[len("metadata["):-1]: v for k, v in form.items()
            if k.startswith("metadata[") and k.endswith("]")}


def positive_int(value):
    if value is None or not re.fullmatch(r"[0-9]+", value) or int(value) <= 0:
        return None
    return int(value)


# ---------------------------------------------------------------- Stripe API
# These run with S.lock held.

def create_intent(form):
    amount = positive_int(form.get("amount"))
    if amount is None:
        return err(400, "amount must be a positive integer (smallest currency unit).", param="amount")
    currency = form.get("currency", "")
    if not re.fullmatch(r"[a-z]{3}", currency):
        return err(400, "currency must be a lower-case three-letter ISO code.", param="currency")
    pid = new_id("pi")
    intent = {"id": pid, "object": "payment_intent", "amount": amount,
              "amount_received": 0, "currency": currency,
              "client_secret": f"{pid}_secret_{secrets.token_hex(12)}",
              "status": "requires_payment_method", "metadata": metadata_of(form),
              "created": now()}
    S.intents[pid] = intent
    return 200, intent


def create_refund(form):
    pid = form.get("payment_intent")
    if not pid:
        return err(400, "Missing required param: payment_intent.", param="payment_intent")
    intent = S.intents.get(pid)
    if intent is None:
        return err(400, f"No such payment_intent: '{pid}'", param="payment_intent", code="resource_missing")
    if intent["status"] != "succeeded":
        return err(400, "This PaymentIntent does not have a successful charge to refund.", param="payment_intent")
    refunds = S.refunds.setdefault(pid, [])
    left = intent["amount_received"] - sum(r["amount"] for r in refunds)
    if "amount" in form:
        amount = positive_int(form["amount"])
        if amount is None:
            return err(400, "amount must be a positive integer.", param="amount")
    else:
        amount = left
    if left <= 0:
        return err(400, f"Charge for {pid} has already been refunded.", code="charge_already_refunded")
    if amount > left:
        return err(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                   param="amount", code="amount_too_large")
    refund = {"id": new_id("re"), "object": "refund", "amount": amount,
              "currency": intent["currency"], "payment_intent": pid,
              "status": "succeeded", "metadata": metadata_of(form), "created": now()}
    refunds.append(refund)
    refunded = sum(r["amount"] for r in refunds)
    charge = {"id": "ch_" + pid[len("pi_"):], "object": "charge", "amount": intent["amount"],
              "amount_refunded": refunded, "currency": intent["currency"],
              "payment_intent": pid, "refunded": refunded == intent["amount"],
              "metadata": dict(intent["metadata"]),
              "refunds": {"object": "list", "data": copy.deepcopy(refunds)}}
    S.queue.append(make_event("charge.refunded", charge))
    return 200, refund


def route_api(method, path, form):
    if method == "POST" and path == "/v1/payment_intents":
        return create_intent(form)
    m = re.fullmatch(r"/v1/payment_intents/([^/]+)", path)
    if method == "GET" and m:
        intent = S.intents.get(m.group(1))
        if intent is None:
            return err(404, f"No such payment_intent: '{m.group(1)}'", param="id", code="resource_missing")
        return 200, intent
    m = re.fullmatch(r"/v1/payment_intents/([^/]+)/cancel", path)
    if method == "POST" and m:
        intent = S.intents.get(m.group(1))
        if intent is None:
            return err(404, f"No such payment_intent: '{m.group(1)}'", param="id", code="resource_missing")
        if intent["status"] == "succeeded":
            return err(400, "You cannot cancel this PaymentIntent because it has a status of succeeded.",
                       code="payment_intent_unexpected_state")
        intent["status"] = "canceled"
        return 200, intent
    if method == "POST" and path == "/v1/refunds":
        return create_refund(form)
    return err(404, f"Unrecognized request URL ({method}: {path}).")


def stripe_api(method, path, query, body, headers):
    raw_form = body.decode("utf-8", "replace") if method == "POST" else query
    form = dict(urllib.parse.parse_qsl(raw_form, keep_blank_values=True))
    key = headers.get("Idempotency-Key")
    with S.lock:
        S.requests.append({"method": method, "path": path, "form": form, "idempotency_key": key})
        if S.down:
            return encoded(err(503, "Stripe is temporarily unavailable (fake outage).", type_="api_error"))
        if not headers.get("Authorization", "").startswith("Bearer sk_"):
            return encoded(err(401, "Invalid API Key provided (expected 'Authorization: Bearer sk_...')."))
        if method == "POST" and key and (key, path) in S.idempotent:
            return S.idempotent[(key, path)]
        result = encoded(route_api(method, path, form))
        if method == "POST" and key:
            S.idempotent[(key, path)] = result
        return result


# ------------------------------------------------------------------ webhooks

def sign(secret, t, payload):
    return hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()


def signature_header(secret, payload, mode):
    t = now() - 600 if mode == "stale" else now()
    if mode == "bad":
        return f"t={t},v1={sign(secret + '_wrong', t, payload)}"
    if mode == "multi":
        return f"t={t},v1={sign('whsec_rotated_out', t, payload)},v1={sign(secret, t, payload)}"
    return f"t={t},v1={sign(secret, t, payload)}"


def post_webhook(url, secret, payload, mode):
    if not url:
        return 0, "no webhook_url configured"
    req = urllib.request.Request(url, data=payload, method="POST", headers={
        "Content-Type": "application/json",
        "Stripe-Signature": signature_header(secret, payload, mode)})
    try:
        with OPENER.open(req, timeout=30) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except Exception as e:  # connection refused, reset, bad response...
        return 0, f"delivery failed: {e}"


def send_all(items, mode, repeat):
    """items: [(event_id, type, payload bytes)]; sent without holding the lock."""
    with S.lock:
        url, secret = S.webhook_url, S.webhook_secret
    out = []
    for event_id, type_, payload in items:
        for _ in range(repeat):
            status, text = post_webhook(url, secret, payload, mode)
            out.append({"event_id": event_id, "type": type_, "status": status, "body": text})
    return 200, {"deliveries": out}


# ------------------------------------------------------------- test control

def queue_event(event):
    S.queue.append(event)
    return 200, {"event_id": event.get("id")}


def control(method, path, data):
    m = re.fullmatch(r"/_control/intents/([^/]+)/(succeed|fail)", path)
    if method == "POST" and m:
        with S.lock:
            intent = S.intents.get(m.group(1))
            if intent is None:
                return err(404, f"No such payment_intent: '{m.group(1)}'", code="resource_missing")
            if m.group(2) == "succeed":
                intent["status"] = "succeeded"
                intent["amount_received"] = intent["amount"]
                intent.pop("last_payment_error", None)
                obj = copy.deepcopy(intent)
                if "amount" in data:
                    obj["amount"] = obj["amount_received"] = data["amount"]
                if "currency" in data:
                    obj["currency"] = data["currency"]
                return queue_event(make_event("payment_intent.succeeded", obj))
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {"message": "Your card was declined."}
            return queue_event(make_event("payment_intent.payment_failed", copy.deepcopy(intent)))
    if method == "GET" and path == "/_control/requests":
        with S.lock:
            return 200, copy.deepcopy(S.requests)
    if method != "POST":
        return err(404, f"Unknown control endpoint ({method}: {path}).")
    if path == "/_control/config":
        with S.lock:
            S.webhook_url = data.get("webhook_url", S.webhook_url)
            S.webhook_secret = data.get("webhook_secret", S.webhook_secret)
        return 200, {"ok": True}
    if path == "/_control/down":
        down = bool(data.get("down", True))
        with S.lock:
            S.down = down
        return 200, {"ok": True, "down": down}
    if path == "/_control/events":
        event = data.get("event")
        if not isinstance(event, dict):
            return err(400, "body must be {\"event\": {...}}", param="event")
        event = copy.deepcopy(event)
        event.setdefault("id", new_id("evt"))
        with S.lock:
            return queue_event(event)
    if path in ("/_control/deliver", "/_control/redeliver"):
        mode = data.get("signature", "good")
        if mode not in SIGNATURE_MODES:
            return err(400, f"signature must be one of {SIGNATURE_MODES}", param="signature")
        with S.lock:
            if path == "/_control/redeliver":
                found = S.delivered.get(data.get("event_id"))
                if found is None:
                    return err(404, f"event {data.get('event_id')!r} was never delivered", param="event_id")
                items, repeat = [(data["event_id"],) + found], 1
            else:
                items = []
                for event in S.queue:
                    payload = json.dumps(event).encode()
                    S.delivered[event.get("id")] = (event.get("type"), payload)
                    items.append((event.get("id"), event.get("type"), payload))
                S.queue = []
                repeat = max(1, int(data.get("repeat", 1)))
        return send_all(items, mode, repeat)
    return err(404, f"Unknown control endpoint ({method}: {path}).")


# ---------------------------------------------------------------- HTTP layer

def encoded(result):
    status, obj = result
    return status, json.dumps(obj).encode()


def control_json(method, path, body):
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return encoded(err(400, "control body must be a JSON object"))
    return encoded(control(method, path, data))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeStripe/1.0"

    def log_message(self, format, *args):
        pass  # keep stdout/stderr free of per-request lines

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def handle_any(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        url = urllib.parse.urlsplit(self.path)
        try:
            if url.path.startswith("/v1/"):
                status, raw = stripe_api(method, url.path, url.query, body, self.headers)
            elif url.path.startswith("/_control/"):
                status, raw = control_json(method, url.path, body)
            else:
                status, raw = encoded(err(404, f"Unrecognized request URL ({method}: {url.path})."))
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            status, raw = encoded(err(500, f"fake_stripe bug: {e}", type_="api_error"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
