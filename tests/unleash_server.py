"""A real Unleash server for tests: npm-installed once into .cache/unleash, its own PostgreSQL database.

`unleash_server` is a session-scoped pytest fixture (import it into a test module or conftest).
The same code runs standalone: `python tests/unleash_server.py` starts a server and prints its URL;
`python tests/unleash_server.py install` only installs (idempotent).

Facts this relies on (checked on the CI machines): unleash-server@7.5.1 is the newest release that
runs on Node 20; it is ESM-only, so it is started from a small .mjs file; tokens are seeded through
INIT_ADMIN_API_TOKENS / INIT_BACKEND_API_TOKENS; /health answers {"health": "GOOD"} when ready.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

UNLEASH_VERSION = "7.5.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL_DIR = Path(os.environ.get("UNLEASH_INSTALL_DIR", REPO_ROOT / ".cache" / "unleash"))
PG_HOST = os.environ.get("UNLEASH_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("UNLEASH_TEST_PGPORT", "5432"))
PG_USER = os.environ.get("UNLEASH_TEST_PGUSER", "postgres")

START_MJS = """\
import { start } from 'unleash-server';
const port = parseInt(process.env.UNLEASH_PORT, 10);
const unleash = await start({
  db: {
    host: process.env.UNLEASH_DB_HOST, port: parseInt(process.env.UNLEASH_DB_PORT, 10),
    user: process.env.UNLEASH_DB_USER, password: process.env.UNLEASH_DB_PASSWORD || '',
    database: process.env.UNLEASH_DB_NAME, ssl: false,
  },
  server: { host: '127.0.0.1', port },
  versionCheck: { enable: false },
  logLevel: 'warn',
});
const stop = async () => { await unleash.stop(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
"""


class UnleashUnavailable(RuntimeError):
    """Node/npm/psql missing: the caller skips with this message."""


@dataclass
class UnleashServer:
    url: str  # base URL, e.g. http://127.0.0.1:4242
    api_url: str  # base URL + /api, what SDKs take
    admin_token: str
    client_token: str
    environment: str
    database: str
    process: subprocess.Popen
    log_path: Path

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": self.admin_token}, timeout=10)


def install(install_dir: Path = INSTALL_DIR) -> Path:
    """npm-install unleash-server into install_dir unless it is already there. Idempotent."""
    marker = install_dir / "node_modules" / "unleash-server" / "package.json"
    if marker.exists() and f'"version": "{UNLEASH_VERSION}"' in marker.read_text():
        return install_dir
    if not shutil.which("node") or not shutil.which("npm"):
        raise UnleashUnavailable("node/npm not on PATH: cannot install unleash-server")
    install_dir.mkdir(parents=True, exist_ok=True)
    pkg = install_dir / "package.json"
    if not pkg.exists():
        pkg.write_text('{"name": "unleash-local", "private": true}\n')
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", f"unleash-server@{UNLEASH_VERSION}"],
        cwd=install_dir,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=900,
    )
    return install_dir


def _psql(sql: str) -> None:
    if not shutil.which("psql"):
        raise UnleashUnavailable("psql not on PATH: cannot create the Unleash database")
    subprocess.run(
        ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(timeout: float = 120.0) -> UnleashServer:
    install_dir = install()
    (install_dir / "start.mjs").write_text(START_MJS)
    database = f"unleash_test_{os.getpid()}_{secrets.token_hex(3)}"
    _psql(f'CREATE DATABASE "{database}"')
    port = _free_port()
    admin_token = f"*:*.{secrets.token_hex(16)}"
    client_token = f"default:development.{secrets.token_hex(16)}"
    env = dict(
        os.environ,
        UNLEASH_PORT=str(port),
        UNLEASH_DB_HOST=PG_HOST,
        UNLEASH_DB_PORT=str(PG_PORT),
        UNLEASH_DB_USER=PG_USER,
        UNLEASH_DB_NAME=database,
        INIT_ADMIN_API_TOKENS=admin_token,
        INIT_BACKEND_API_TOKENS=client_token,
    )
    log_path = install_dir / f"server-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(["node", "start.mjs"], cwd=install_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = UnleashServer(url, url + "/api", admin_token, client_token, "development", database, proc, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            stop(server)
            raise RuntimeError(f"unleash-server exited with {proc.returncode}; log: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).json().get("health") == "GOOD":
                return server
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            stop(server)
            raise RuntimeError(f"unleash-server not healthy after {timeout}s; log: {log_path.read_text()[-2000:]}")
        time.sleep(0.3)


def stop(server: UnleashServer) -> None:
    proc = server.process
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    try:
        _psql(f'DROP DATABASE IF EXISTS "{server.database}" WITH (FORCE)')
    except Exception as exc:  # pragma: no cover - cleanup best effort
        print(f"could not drop {server.database}: {exc}", file=sys.stderr)
    try:
        server.log_path.unlink()
    except OSError:
        pass


try:
    import pytest

    @pytest.fixture(scope="session")
    def unleash_server():
        try:
            server = start()
        except UnleashUnavailable as exc:
            if os.environ.get("CI"):  # CI must run the real server, never skip it
                pytest.fail(f"Unleash is required in CI: {exc}")
            print(f"SKIP unleash tests: {exc}")
            pytest.skip(str(exc))
        try:
            yield server
        finally:
            stop(server)

except ImportError:  # pragma: no cover - standalone use without pytest
    pass


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:  # `python tests/unleash_server.py install`: for CI / Makefile warm-up
        print(install())
        sys.exit(0)
    srv = start()
    print(f"Unleash at {srv.url} (database {srv.database}); Ctrl-C stops it")
    try:
        srv.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(srv)
