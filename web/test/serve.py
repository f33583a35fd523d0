#!/usr/bin/env python3
"""Serves a folder (web/) on 127.0.0.1 only, for scripts/web.sh serve and test.

Python's own `http.server` would do, but its MIME types come from the platform's mimetypes
tables, and WebAssembly.instantiateStreaming refuses a .wasm served as anything other than
application/wasm. This server sets the types the page needs itself, and sends no-store so a
rebuild is picked up by a plain reload.

    python3 web/test/serve.py [--port 8000] [--directory web] [--port-file FILE] [--quiet]

--port 0 picks a free port; --port-file writes the port chosen once the socket is listening.
"""

import argparse
import functools
import http.server
import os
import sys

TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}
    quiet = False

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        # Cross-origin isolation: the browser then times with performance.now() at its fine
        # resolution instead of rounding to 100 us (the page loads nothing from elsewhere).
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--directory", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--port-file")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    Handler.quiet = args.quiet
    handler = functools.partial(Handler, directory=os.path.abspath(args.directory))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    except OSError as e:
        sys.exit(f"serve: cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}")
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"serve: {os.path.abspath(args.directory)} on http://127.0.0.1:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
