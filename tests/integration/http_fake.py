"""http_fake.py - a scripted HTTP(S) server for the HTTP destination tests
(python's http.server + ssl), on 127.0.0.1.

decide(req) is called for every request to a path other than /token, in
arrival order under a lock; it returns (status, headers dict, body bytes,
delay seconds) or just a status.  Every request is recorded (method, path,
headers, body, arrival time) before it is answered.  /token is an OAuth2
client-credentials endpoint: it checks the basic credentials, issues a new
token valid `token_ttl` seconds, and resource requests with a missing,
unknown or expired token get 401 (when `oauth` is on).
"""
import base64
import http.server
import json
import secrets
import socketserver
import ssl
import threading
import time


class Req:
    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.t = time.monotonic()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass   # a client that went away (a killed engine, a refused handshake)


class FakeHTTP:
    def __init__(self, decide=None, port=0, ssl_context=None, oauth=None, token_ttl=3600):
        self.decide = decide or (lambda r: 200)
        self.oauth = oauth          # (client_id, secret) or None
        self.token_ttl = token_ttl
        self.tokens = {}            # token -> expiry (monotonic)
        self.token_requests = 0
        self.rejected_401 = 0
        self.lock = threading.RLock()
        self.reqs = []
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, status, headers=None, body=b"", delay=0):
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def do_PUT(self):
                self.do_POST()

            def do_POST(self):
                body = self._body()
                if self.path == "/token" and fake.oauth:
                    return self._token(body)
                r = Req(self.command, self.path, dict(self.headers), body)
                with fake.lock:
                    if fake.oauth:
                        auth = self.headers.get("Authorization", "")
                        tok = auth[7:] if auth.startswith("Bearer ") else None
                        exp = fake.tokens.get(tok)
                        if exp is None or exp < time.monotonic():
                            fake.rejected_401 += 1
                            out = (401, {}, b"", 0)
                            r = None
                    if r is not None:
                        fake.reqs.append(r)
                        out = fake.decide(r)
                if isinstance(out, int):
                    out = (out, {}, b"", 0)
                self._send(*out)

            def _token(self, body):
                cid, sec = fake.oauth
                want = "Basic " + base64.b64encode(("%s:%s" % (cid, sec)).encode()).decode()
                with fake.lock:
                    fake.token_requests += 1
                    if self.headers.get("Authorization") != want or \
                            b"grant_type=client_credentials" not in body:
                        return self._send(401, {}, b'{"error":"invalid_client"}')
                    tok = secrets.token_hex(16)
                    fake.tokens[tok] = time.monotonic() + fake.token_ttl
                out = json.dumps({"access_token": tok, "token_type": "Bearer",
                                  "expires_in": fake.token_ttl}).encode()
                self._send(200, {"Content-Type": "application/json"}, out)

        self.srv = _Server(("127.0.0.1", port), H)
        if ssl_context:
            self.srv.socket = ssl_context.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def revoke_all(self):
        with self.lock:
            self.tokens.clear()

    def requests(self):
        with self.lock:
            return list(self.reqs)

    def wait(self, pred, timeout=15.0, what="requests"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rs = self.requests()
            if pred(rs):
                return rs
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s; got %d" % (what, len(self.requests())))

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()
