"""A stand-in for the Hugging Face Hub's file endpoint, for tests: serves folders as dataset
repos at ``/datasets/<org>/<name>/resolve/<revision>/<path>`` (HEAD and GET, with the headers
huggingface_hub reads: ``X-Repo-Commit``, ``ETag``, ``Content-Length``; 404 with
``X-Error-Code: EntryNotFound`` or ``RepoNotFound``), and records every path asked for.
Only the endpoint the download functions use; nothing of the Hub's API."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse



def commit_of(folder: Path) -> str:
    """A 40-hex commit id that changes with the folder's content, as a Hub commit does (so
    huggingface_hub's cache, keyed on commits, never mixes two test releases)."""
    h = hashlib.sha1()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


class HubStandIn:
    """``with HubStandIn({"org/name": folder}) as hub:`` serves at ``hub.endpoint``;
    ``hub.requests`` lists (method, repo, path) in order."""

    def __init__(self, repos: dict):
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.requests: list[tuple[str, str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _resolve(self):
                parts = unquote(urlparse(self.path).path).split("/")
                # ["", "datasets", org, name, "resolve", revision, *path]
                if len(parts) < 7 or parts[1] != "datasets" or parts[4] != "resolve":
                    return None, None, "RepoNotFound"
                repo, rev, rel = f"{parts[2]}/{parts[3]}", parts[5], "/".join(parts[6:])
                hub.requests.append((self.command, repo, rel))
                root = hub.repos.get(repo)
                if root is None or rev not in ("main", commit_of(root)):
                    return None, None, "RepoNotFound" if root is None else "RevisionNotFound"
                file = (root / rel).resolve()
                if root.resolve() not in file.parents or not file.is_file() or rel.startswith(".") or "/." in rel:
                    return None, None, "EntryNotFound"
                return file, commit_of(root), None

            def _head(self, send_body: bool):
                file, commit, error = self._resolve()
                if error:
                    self.send_response(404)
                    self.send_header("X-Error-Code", error)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = file.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._head(send_body=False)

            def do_GET(self):
                self._head(send_body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def downloaded(self) -> set[str]:
        """Paths fetched with GET."""
        return {path for method, _, path in self.requests if method == "GET"}
