"""A small third-party API-key provider over HTTPS, for the `http` rotation playbook's tests.

Usage: key_provider.py --cert CERT.pem --key KEY.pem --initial-id ID --initial-key KEY

Prints `https PORT control PORT` once listening; exits when stdin closes. Standard library only.

HTTPS API (every call authenticated with `Authorization: Bearer <an active key>`):
  POST   /keys        create a key        -> 201 {"id": "k-N", "key": "..."}
  GET    /whoami      check the caller    -> 200 {"id": "..."} (401 for a revoked/unknown key)
  DELETE /keys/ID     revoke key ID       -> 204 (404 if unknown)
Control API (plain HTTP, loopback; for the tests to look inside):
  GET    /keys        -> 200 [{"id": "...", "active": true|false}, ...] (never the keys)
"""

import argparse
import json
import os
import secrets
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

keys = {}  # id -> {"key": str, "active": bool}
lock = threading.Lock()


def caller(headers):
    auth = headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    token = auth[len("Bearer "):]
    with lock:
        for key_id, entry in keys.items():
            if entry["active"] and secrets.compare_digest(entry["key"], token):
                return key_id
    return None


class Api(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, doc=None):
        body = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authenticated(self):
        who = caller(self.headers)
        if who is None:
            self.reply(401, {"error": "invalid key"})
        return who

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if self.path != "/keys" or self.authenticated() is None:
            return None if self.path == "/keys" else self.reply(404)
        with lock:
            key_id = f"k-{len(keys)}"
            keys[key_id] = {"key": secrets.token_urlsafe(24), "active": True}
            self.reply(201, {"id": key_id, "key": keys[key_id]["key"]})

    def do_GET(self):
        if self.path != "/whoami":
            return self.reply(404)
        who = self.authenticated()
        if who is not None:
            self.reply(200, {"id": who})

    def do_DELETE(self):
        if not self.path.startswith("/keys/") or self.authenticated() is None:
            return None if self.path.startswith("/keys/") else self.reply(404)
        key_id = self.path[len("/keys/"):]
        with lock:
            if key_id not in keys:
                return self.reply(404)
            keys[key_id]["active"] = False
        self.reply(204)


class Control(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with lock:
            doc = [{"id": k, "active": v["active"]} for k, v in sorted(keys.items())]
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--initial-id", required=True)
    parser.add_argument("--initial-key", required=True)
    args = parser.parse_args()
    keys[args.initial_id] = {"key": args.initial_key, "active": True}

    api = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    api.socket = context.wrap_socket(api.socket, server_side=True)
    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    for server in (api, control):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"https {api.server_port} control {control.server_port}", flush=True)
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
