"""Where the lake lives: a local folder, or an object-store URL (`s3://`, `abfss://`, `gs://`).

One home for the three things that differ between them:
- joining a path under the root (`Path` would turn `s3://bucket/lake` into `s3:/bucket/lake`);
- the delta-rs `storage_options`: taken from the environment, never from Dagster config, so keys
  and secrets never reach run config, metadata or logs;
- small files that are not Delta tables (the sentiment model store under `<lake>/models`), read and
  written through a pyarrow filesystem built from the same options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import pyarrow.fs as pafs

# URL scheme -> the environment-variable prefixes delta-rs' object_store reads for it.
ENV_PREFIXES = {
    "s3": ("AWS_",),
    "s3a": ("AWS_",),
    "abfs": ("AZURE_",),
    "abfss": ("AZURE_",),
    "az": ("AZURE_",),
    "azure": ("AZURE_",),
    "gs": ("GOOGLE_",),
    "gcs": ("GOOGLE_",),
}


def scheme(root: str | os.PathLike) -> str | None:
    """The URL scheme of an object-store root, None for a local folder (or a `file://` URL)."""
    text = str(root)
    if "://" not in text:
        return None
    name = text.split("://", 1)[0].lower()
    if name == "file":
        return None
    if name not in ENV_PREFIXES:
        raise ValueError(f"unsupported lake root {text!r}: a folder, or s3://, abfss:// or gs:// (also s3a, abfs, az, gcs)")
    return name


def local_path(root: str | os.PathLike) -> Path:
    text = str(root)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def join(root: str | os.PathLike, *parts: str) -> str:
    """`root/part/...` for a folder or a URL, keeping the URL's double slash."""
    if scheme(root) is None:
        return str(local_path(root).joinpath(*parts))
    return "/".join([str(root).rstrip("/"), *(p.strip("/") for p in parts)])


def storage_options(root: str | os.PathLike, environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """delta-rs options for `root`: every variable of the scheme's family (AWS_*, AZURE_*, GOOGLE_*)
    from the environment, e.g. AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_REGION. None for a local folder."""
    name = scheme(root)
    if name is None:
        return None
    env = os.environ if environ is None else environ
    prefixes = ENV_PREFIXES[name]
    return {k: v for k, v in env.items() if k.startswith(prefixes) and v}


class Files:
    """Small files under a folder or URL (the model store): exists, read, write. Not for tables."""

    def __init__(self, root: str | os.PathLike, options: Mapping[str, str] | None = None):
        self.root = str(root)
        self.options = dict(options) if options is not None else (storage_options(root) or {})

    def uri(self, name: str) -> str:
        return join(self.root, name)

    def exists(self, name: str) -> bool:
        fs, path = self._fs(name)
        return fs.get_file_info(path).type == pafs.FileType.File

    def read_bytes(self, name: str) -> bytes:
        fs, path = self._fs(name)
        with fs.open_input_stream(path) as stream:
            return stream.read()

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write `name` whole: an object PUT is atomic; a local file is written aside and renamed, so a
        reader never sees half a pointer file."""
        fs, path = self._fs(name)
        if scheme(self.root) is None:
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            temporary = f"{path}.tmp-{os.getpid()}"
            with fs.open_output_stream(temporary) as stream:
                stream.write(data)
            fs.move(temporary, path)
        else:
            with fs.open_output_stream(path) as stream:
                stream.write(data)
        return self.uri(name)

    def _fs(self, name: str) -> tuple[pafs.FileSystem, str]:
        uri = self.uri(name)
        kind = scheme(self.root)
        if kind is None:
            return pafs.LocalFileSystem(), str(local_path(uri).absolute())
        if kind in ("s3", "s3a"):
            return _s3(self.options), uri.split("://", 1)[1]
        return pafs.FileSystem.from_uri(uri)


def _s3(options: Mapping[str, str]) -> pafs.S3FileSystem:
    endpoint = options.get("AWS_ENDPOINT_URL") or options.get("AWS_ENDPOINT")
    kwargs = {
        "access_key": options.get("AWS_ACCESS_KEY_ID"),
        "secret_key": options.get("AWS_SECRET_ACCESS_KEY"),
        "session_token": options.get("AWS_SESSION_TOKEN"),
        "region": options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION"),
    }
    if endpoint:
        kind, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or kind, scheme=kind if host else "https")
    return pafs.S3FileSystem(**{k: v for k, v in kwargs.items() if v})
