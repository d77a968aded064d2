#!/usr/bin/env python3
"""The CloudEvents sink of `make demo`: prints each event it receives (POST /events, any
mode) as one line, on a loopback port it writes to PORT_FILE. Usage: demo_peer.py PORT_FILE"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def say(line):
    # One write per line, so that lines of this process and ccm's never interleave.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Peer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ctype = self.headers.get("Content-Type", "")
        events = json.loads(body) if ctype.startswith("application/cloudevents") else []
        if isinstance(events, dict):
            events = [events]
        for e in events:
            data = e.get("data", {})
            if "new_state" in data:
                detail = f"{data.get('previous_state') or '':>13} -> {data.get('new_state')}"
            else:
                detail = data.get("reason") or data.get("template") or ""
            say(f"  [sink] {e['type']:<46} {e['subject'][-8:]}  {detail}")
        self.reply(202)


server = ThreadingHTTPServer(("127.0.0.1", 0), Peer)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
