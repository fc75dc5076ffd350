"""Screenshot of a rendered page of the site, as a browser shows it: docs/assets/site.png.

    python docs/gen/screenshot.py [--page how-to/python/] [--out docs/assets/site.png]

Builds the site into a temporary folder, serves it on 127.0.0.1 and takes the screenshot with headless
Chromium (`apt-get install chromium`), started without any network access of its own. Nothing here is run by
the tests: the PNG is committed so that reviewers see what users see.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--page", default="how-to/python/", help="page path under the site root")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "assets" / "site.png")
    ap.add_argument("--size", default="1280,900", help="window size W,H in CSS px")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet", "-f", str(REPO / "mkdocs.yml"),
                        "-d", str(site)], check=True, cwd=REPO, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
        handler = functools.partial(_QuietHandler, directory=str(site))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/{args.page}"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([args.chromium, *FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}",
                            f"--window-size={args.size}", f"--screenshot={args.out}", url],
                           check=True, capture_output=True, timeout=120)
        finally:
            server.shutdown()
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
