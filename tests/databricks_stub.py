"""A local stand-in for the Databricks REST API that `PipesDatabricksClient` uses (Jobs 2.2 + DBFS 2.0),
strict about the documented contract, that "runs" a submitted task as a local subprocess — a
one-machine cluster whose DBFS FUSE mount is a temp folder.

Enforced: `Authorization: Bearer <token>` on every request (401 otherwise); DBFS paths absolute;
`put` contents base64 and under the 1 MB inline limit, no overwrite of an existing file unless
`overwrite`; `mkdirs`/`delete` semantics (a non-empty folder needs `recursive`); `read` of a missing
file and `get-status`/`runs/get` of something unknown → 404 RESOURCE_DOES_NOT_EXIST; runs/submit: a
`tasks` list, each task with `task_key`, exactly one of `new_cluster` / `existing_cluster_id`, a
new cluster with `spark_version`, `node_type_id` and `num_workers` (or `autoscale`), and a
`spark_python_task.python_file`; 400 INVALID_PARAMETER_VALUE otherwise. Runs go PENDING → RUNNING →
TERMINATING → TERMINATED with result_state SUCCESS or FAILED (state_message from the task's stderr).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from loopback import JsonHandler, LoopbackServer

INLINE_LIMIT = 1 << 20
JOB_MODULE = "rollback_assets.engines.spark_job"


class DatabricksStub(LoopbackServer):
    def __init__(self, token: str, cluster_env: dict | None = None):
        self.token = token
        self.cluster_env = cluster_env or {}  # what the emulated cluster adds (e.g. ROLLBACK_SPARK_MASTER)
        self.dbfs = Path(tempfile.mkdtemp(prefix="dbfs-stub-"))
        self.requests: list[dict] = []  # method, path, status, body (JSON bodies as sent)
        self.submits: list[dict] = []
        self.runs: dict[int, dict] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1001)
        super().__init__()

    def stop(self) -> None:
        super().stop()
        for run in self.runs.values():
            if run["process"].poll() is None:
                run["process"].kill()
        shutil.rmtree(self.dbfs, ignore_errors=True)

    # ------------------------------------------------------------------ DBFS
    def local(self, path: str) -> Path:
        return self.dbfs / path.removeprefix("dbfs:").lstrip("/")

    # ------------------------------------------------------------------ runs
    def submit(self, body: dict) -> tuple[int, dict]:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            return 400, _error("INVALID_PARAMETER_VALUE", "tasks must be a non-empty list")
        for task in tasks:
            problem = _task_problem(task)
            if problem:
                return 400, _error("INVALID_PARAMETER_VALUE", problem)
        task = tasks[0]
        run_id = next(self._ids)
        cluster = task["new_cluster"]
        # What Databricks presets in the cluster's session: the task's spark_conf and the usage tags
        # dagster-pipes' DBFS writer reads (log delivery under dbfs:/cluster-logs/<cluster id>).
        spark_conf = {**cluster.get("spark_conf", {}),
                      "spark.databricks.clusterUsageTags.clusterLogDeliveryEnabled": "true",
                      "spark.databricks.clusterUsageTags.clusterLogDestination": "dbfs:/cluster-logs",
                      "spark.databricks.clusterUsageTags.clusterId": f"stub-{run_id}"}
        submit_args = " ".join(f"--conf {k}={v}" for k, v in spark_conf.items()) + " pyspark-shell"
        env = {**os.environ, **self.cluster_env, **cluster.get("spark_env_vars", {}),
               "ROLLBACK_DBFS_MOUNT": str(self.dbfs), "PYSPARK_SUBMIT_ARGS": submit_args}
        command = [sys.executable, "-m", JOB_MODULE, *task["spark_python_task"].get("parameters", [])]
        stderr = tempfile.TemporaryFile()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        self.runs[run_id] = {"process": process, "stderr": stderr, "polls": 0, "cancelled": False}
        self.submits.append(body)
        return 200, {"run_id": run_id}

    def run_state(self, run_id: int) -> dict:
        run = self.runs[run_id]
        run["polls"] += 1
        code = run["process"].poll()
        if run["polls"] == 1:
            return {"life_cycle_state": "PENDING", "state_message": "Waiting for cluster"}
        if code is None:
            return {"life_cycle_state": "RUNNING", "state_message": "In run"}
        if run.get("terminating_seen") is None:
            run["terminating_seen"] = True
            return {"life_cycle_state": "TERMINATING", "state_message": "Cleaning up"}
        if run["cancelled"]:
            return {"life_cycle_state": "TERMINATED", "result_state": "CANCELED", "state_message": "Run cancelled"}
        if code == 0:
            return {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""}
        run["stderr"].seek(0)
        tail = run["stderr"].read().decode(errors="replace").strip().splitlines()[-1:] or ["exit " + str(code)]
        return {"life_cycle_state": "TERMINATED", "result_state": "FAILED", "state_message": tail[0][:500]}

    def _handler(self):
        stub = self

        class Handler(JsonHandler):
            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}") if length else {}

            def _answer(self, method: str):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self._body() if method == "POST" else {}
                if self.headers.get("Authorization") != f"Bearer {stub.token}":
                    status, payload = 401, _error("UNAUTHENTICATED", "Invalid access token.")
                else:
                    with stub.lock:
                        status, payload = stub.route(method, url.path, query, body)
                stub.requests.append({"method": method, "path": url.path, "status": status, "query": query, "body": body})
                self._reply(status, payload)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

        return Handler

    def route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        if (method, path) == ("POST", "/api/2.0/dbfs/mkdirs"):
            target = self._path(body)
            if target is None:
                return 400, _error("INVALID_PARAMETER_VALUE", "path must be absolute")
            target.mkdir(parents=True, exist_ok=True)
            return 200, {}
        if (method, path) == ("POST", "/api/2.0/dbfs/put"):
            target = self._path(body)
            if target is None:
                return 400, _error("INVALID_PARAMETER_VALUE", "path must be absolute")
            try:
                data = base64.b64decode(body.get("contents", ""), validate=True)
            except ValueError:
                return 400, _error("INVALID_PARAMETER_VALUE", "contents must be base64")
            if len(body.get("contents", "")) > INLINE_LIMIT:
                return 400, _error("MAX_BLOCK_SIZE_EXCEEDED", "inline contents are limited to 1 MB")
            if target.exists() and not body.get("overwrite"):
                return 400, _error("RESOURCE_ALREADY_EXISTS", f"{body['path']} already exists")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            return 200, {}
        if (method, path) == ("GET", "/api/2.0/dbfs/get-status"):
            target = self._path(query)
            if target is None or not target.exists():
                return 404, _error("RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {query.get('path')}.")
            return 200, {"path": query["path"], "is_dir": target.is_dir(),
                         "file_size": 0 if target.is_dir() else target.stat().st_size}
        if (method, path) == ("GET", "/api/2.0/dbfs/read"):
            target = self._path(query)
            if target is None or not target.is_file():
                return 404, _error("RESOURCE_DOES_NOT_EXIST", f"No file exists on path {query.get('path')}.")
            offset, length = int(query.get("offset", 0)), min(int(query.get("length", INLINE_LIMIT)), INLINE_LIMIT)
            data = target.read_bytes()[offset:offset + length]
            return 200, {"bytes_read": len(data), "data": base64.b64encode(data).decode()}
        if (method, path) == ("POST", "/api/2.0/dbfs/delete"):
            target = self._path(body)
            if target is None:
                return 400, _error("INVALID_PARAMETER_VALUE", "path must be absolute")
            if target.is_dir():
                if any(target.iterdir()) and not body.get("recursive"):
                    return 400, _error("IO_ERROR", "directory not empty; use recursive")
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            return 200, {}
        if (method, path) == ("POST", "/api/2.2/jobs/runs/submit"):
            return self.submit(body)
        if (method, path) == ("GET", "/api/2.2/jobs/runs/get"):
            run_id = int(query.get("run_id", 0))
            if run_id not in self.runs:
                return 404, _error("RESOURCE_DOES_NOT_EXIST", f"Run {run_id} does not exist.")
            return 200, {"run_id": run_id, "state": self.run_state(run_id),
                         "run_page_url": f"{self.url}/#job/runs/{run_id}"}
        if (method, path) == ("POST", "/api/2.2/jobs/runs/cancel"):
            run = self.runs.get(int(body.get("run_id", 0)))
            if run is None:
                return 404, _error("RESOURCE_DOES_NOT_EXIST", "no such run")
            run["cancelled"] = True
            run["process"].terminate()
            return 200, {}
        return 404, _error("ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _path(self, params: dict) -> Path | None:
        path = params.get("path", "")
        return self.local(path) if path.removeprefix("dbfs:").startswith("/") else None


def _task_problem(task: dict) -> str | None:
    if not task.get("task_key"):
        return "task_key is required"
    if ("new_cluster" in task) == ("existing_cluster_id" in task):
        return "exactly one of new_cluster and existing_cluster_id is required"
    cluster = task.get("new_cluster")
    if cluster is not None:
        missing = [k for k in ("spark_version", "node_type_id") if not cluster.get(k)]
        if missing or ("num_workers" not in cluster and "autoscale" not in cluster):
            return f"new_cluster needs spark_version, node_type_id and num_workers or autoscale (missing {missing})"
        if not all(isinstance(v, str) for v in cluster.get("spark_env_vars", {}).values()):
            return "spark_env_vars values must be strings"
    if not (task.get("spark_python_task") or {}).get("python_file"):
        return "spark_python_task.python_file is required"
    return None


def _error(code: str, message: str) -> dict:
    return {"error_code": code, "message": message}
