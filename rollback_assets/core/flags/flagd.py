"""flagd backend: rewrites a flagd flag-definition JSON file that flagd (or an OpenFeature flagd
provider in FILE / in-process mode) watches.

Representation of a state:
  rollout 100       defaultVariant=<on>,  no targeting
  rollout 0 < r < 100   "targeting": {"fractional": [[<on>, r], [<off>, 100 - r]]}
  rollout 0         defaultVariant=<off>, no targeting
  variant V         defaultVariant=V, no targeting (V must be one of the flag's variants)
  disabled          "state": "DISABLED" (the evaluating caller's default is served: pass the safe one)
The file is rewritten atomically (temp file + os.replace) under an advisory lock, so a watcher never
reads half a file and two writers never lose each other's change. The last action id is kept in the
flag's metadata.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

from .base import FlagState, FlagTarget, PermanentBackendError, TransientBackendError

SCHEMA = "https://flagd.dev/schema/v0/flags.json"


class FlagdFileBackend:
    name = "flagd"

    def __init__(self, path: str | os.PathLike, on_variant: str = "on", off_variant: str = "off", create_missing: bool = True):
        self.path = Path(path)
        self.on_variant = on_variant
        self.off_variant = off_variant
        self.create_missing = create_missing

    def secrets(self) -> tuple[str, ...]:
        return ()

    # -- file io -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {"$schema": SCHEMA, "flags": {}}
        except OSError as exc:
            raise TransientBackendError(f"flagd: cannot read {self.path.name}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PermanentBackendError(f"flagd: {self.path.name} is not valid JSON: {exc}") from None
        doc.setdefault("flags", {})
        return doc

    def _write(self, doc: dict) -> None:
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=2, sort_keys=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise TransientBackendError(f"flagd: cannot write {self.path.name}: {exc.strerror}") from None

    # -- state -------------------------------------------------------------------------------------
    def _state_of(self, flag_key: str, flag: dict) -> FlagState:
        enabled = flag.get("state", "ENABLED") != "DISABLED"
        default = flag.get("defaultVariant")
        targeting = flag.get("targeting") or {}
        if "fractional" in targeting:
            buckets = [b for b in targeting["fractional"] if isinstance(b, list) and len(b) >= 1]
            weights = {b[0]: (b[1] if len(b) > 1 else 1) for b in buckets}
            total = sum(weights.values()) or 1
            return FlagState(flag_key, enabled, round(100 * weights.get(self.on_variant, 0) / total))
        if default == self.on_variant:
            return FlagState(flag_key, enabled, 100)
        if default == self.off_variant or default is None:
            return FlagState(flag_key, enabled, 0)
        return FlagState(flag_key, enabled, 0, variant=default)

    def get_state(self, flag_key: str) -> FlagState:
        flag = self._load()["flags"].get(flag_key)
        if flag is None:
            raise PermanentBackendError(f"flagd: no flag {flag_key!r} in {self.path.name}")
        return self._state_of(flag_key, flag)

    def apply(self, flag_key: str, target: FlagTarget, *, idempotency_key: str, comment: str = "") -> FlagState:
        with self._locked():
            doc = self._load()
            flag = doc["flags"].get(flag_key)
            if flag is None:
                if not self.create_missing:
                    raise PermanentBackendError(f"flagd: no flag {flag_key!r} in {self.path.name}")
                flag = {"state": "ENABLED", "variants": {self.on_variant: True, self.off_variant: False}, "defaultVariant": self.off_variant}
            flag = dict(flag)
            variants = flag.get("variants") or {}
            if target.variant is not None and target.variant not in variants:
                raise PermanentBackendError(f"flagd: flag {flag_key!r} has no variant {target.variant!r}")
            if target.enabled:
                for v in (self.on_variant, self.off_variant):
                    if target.variant is None and v not in variants:
                        raise PermanentBackendError(f"flagd: flag {flag_key!r} has no variant {v!r}")
                flag["state"] = "ENABLED"
                flag.pop("targeting", None)
                r = int(target.rollout)
                if target.variant is not None:
                    flag["defaultVariant"] = target.variant
                elif r >= 100:
                    flag["defaultVariant"] = self.on_variant
                elif r <= 0:
                    flag["defaultVariant"] = self.off_variant
                else:
                    flag["defaultVariant"] = self.off_variant
                    flag["targeting"] = {"fractional": [[self.on_variant, r], [self.off_variant, 100 - r]]}
            else:
                flag["state"] = "DISABLED"
            meta = dict(flag.get("metadata") or {})
            meta["lastActionId"] = idempotency_key
            flag["metadata"] = meta
            doc["flags"][flag_key] = flag
            doc.setdefault("$schema", SCHEMA)
            self._write(doc)
            return self._state_of(flag_key, flag)
