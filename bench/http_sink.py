#!/usr/bin/env python3
"""http_sink.py PORT - a bare HTTP/1.1 sink for bench/http_delivery.sh:
answers every POST/PUT 200 with an empty body (keep-alive), counts them, and
answers GET /count with the count.  Python's http.server, threaded: a
yardstick that is itself not fast, which the script says beside the figure."""
import http.server
import socketserver
import sys
import threading

count = 0
lock = threading.Lock()


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        global count
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        with lock:
            count += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST

    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
