#!/usr/bin/env python3
"""A minimal receiver for omniroute's webhook alert sink, for trying it out.

    python3 scripts/alert-receiver.py --port 8090 --secret dev-alert-secret

Checks every request the way a production receiver should: the
X-Omniroute-Timestamp is recent (5 minutes) and X-Omniroute-Signature is
sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the shared secret>;
deduplicates on X-Omniroute-Alert-Id (deliveries are at least once). Prints
one line per alert; answers 401 to a bad signature, 200 otherwise.
"""
import argparse
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--secret", default="dev-alert-secret")
    args = ap.parse_args()
    seen = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            ts = self.headers.get("X-Omniroute-Timestamp", "")
            sig = self.headers.get("X-Omniroute-Signature", "")
            want = "sha256=" + hmac.new(args.secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
            if not (fresh and hmac.compare_digest(sig, want)):
                self.send_response(401)
                self.end_headers()
                print("refused: bad or stale signature", flush=True)
                return
            alert_id = self.headers.get("X-Omniroute-Alert-Id", "")
            self.send_response(200)
            self.end_headers()
            if alert_id in seen:
                return
            seen.add(alert_id)
            a = json.loads(body)
            if a.get("kind") == "digest":
                print(f"digest: {a.get('summary')}", flush=True)
            else:
                print(f"{a.get('kind'):8} {a.get('queue')} {a.get('channel')} contact {a.get('contact_id')} "
                      f"{a.get('clock')} {a.get('elapsed_secs')} s of {a.get('target_secs')} s", flush=True)

        def log_message(self, *_):
            pass

    print(f"listening on http://127.0.0.1:{args.port}/alerts", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
