"""A tiny HTTP server that records each request and answers 500: a stand-in libSQL server.

It runs in its own process: the libSQL SDK holds the GIL while it waits on the network,
so a server thread inside the test process would never get to answer.

    python refusing_http_server.py LOG_FILE   # prints the port on stdout, then serves
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main(log_file: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with open(log_file, "a", encoding="utf-8") as log:
                record = {"path": self.path, "authorization": self.headers.get("Authorization", "")}
                log.write(json.dumps(record) + "\n")
            body = b'{"message": "server says no"}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
