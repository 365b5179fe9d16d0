"""A real SMTP server for Gatehouse's integration tests (aiosmtpd).

Every message it accepts is appended to --out as one JSON line: envelope sender and recipients, the
Message-ID, From, Subject, which MIME parts it has, and the authenticated user. --delay-ms slows each DATA
command down (to catch a sender mid-send); --user/--password require AUTH (PLAIN/LOGIN, without TLS).
"""
import argparse
import asyncio
import email
import email.policy
import json
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, out, delay):
        self.out = out
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        parts = sorted({p.get_content_type() for p in msg.walk() if not p.is_multipart()})
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "message_id": msg.get("Message-ID"),
            "from": msg.get("From"),
            "to": msg.get("To"),
            "subject": msg.get("Subject"),
            "parts": parts,
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
            "auth_user": session.auth_data.login.decode() if session.auth_data else None,
            "at": time.time(),
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        return "250 Message accepted for delivery"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--user")
    ap.add_argument("--password")
    args = ap.parse_args()

    kwargs = {}
    if args.user:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == args.user and auth_data.password.decode() == args.password
            return AuthResult(success=ok, auth_data=auth_data)
        kwargs = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}

    controller = Controller(Sink(args.out, args.delay_ms / 1000), hostname="127.0.0.1", port=args.port, **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
