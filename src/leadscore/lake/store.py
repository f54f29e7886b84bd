"""Where lake files live: a local directory or an S3 bucket, behind one small interface (pyarrow.fs).

Every put is all-or-nothing at its key (local: write a temp file, fsync, rename; S3: one PUT or a completed
multipart upload), and a put to an existing key replaces it, so retries never add a second copy.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlparse

import pyarrow.fs as pafs
import pyarrow.parquet as pq

PARTITION_FORMAT: Final = "year={year:04d}/month={month:02d}/day={day:02d}"
# Parquet footer key of a compacted file: the JSON list of the keys it replaces.
REPLACES_KEY: Final = b"leadscore.replaces"


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach an S3-compatible store; None means the AWS SDK's default (credential chain, region)."""

    endpoint_url: str | None = None
    region: str | None = None
    # Non-AWS stores (Ceph RGW, MinIO) reject the SDK's default aws-chunked uploads with CRC trailers.
    checksum_when_required: bool | None = None


class Store:
    """A lake location: `put`, `get`, `list`, `delete` of files by key relative to the lake root."""

    def __init__(self, filesystem: pafs.FileSystem, root: str, uri: str) -> None:
        self.fs = filesystem
        self.root = root.rstrip("/")
        self.uri = uri
        self.is_local = isinstance(filesystem, pafs.LocalFileSystem)

    def path(self, key: str) -> str:
        """Filesystem path of a key."""
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> None:
        """Write `data` at `key`, replacing what was there, all or nothing."""
        path = self.path(key)
        if self.is_local:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(target)
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return
        with self.fs.open_output_stream(path) as stream:
            stream.write(data)

    def get(self, key: str) -> bytes:
        """The bytes at `key`."""
        with self.fs.open_input_stream(self.path(key)) as stream:
            return bytes(stream.read())

    def list(self, prefix: str = "") -> list[str]:
        """Keys of visible files under `prefix` (hidden `.`/`_` names excluded), sorted."""
        base = self.path(prefix).rstrip("/")
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except FileNotFoundError:
            return []
        keys = []
        for info in infos:
            if info.type != pafs.FileType.File or info.base_name.startswith((".", "_")):
                continue
            keys.append(info.path[len(self.root) + 1 :])
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove `key` (no error if it is already gone)."""
        try:
            self.fs.delete_file(self.path(key))
        except FileNotFoundError:
            return


def open_store(uri: str, s3: S3Options | None = None) -> Store:
    """The store for `uri`: `s3://bucket/prefix` or a local directory (created if missing)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        options = s3 or S3Options()
        checksum = options.checksum_when_required
        if checksum if checksum is not None else options.endpoint_url is not None:
            # Read by the AWS SDK inside pyarrow; there is no per-client option for it.
            os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
            os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
        kwargs: dict[str, object] = {}
        if options.endpoint_url:
            endpoint = urlparse(options.endpoint_url)
            kwargs["endpoint_override"] = endpoint.netloc or options.endpoint_url
            kwargs["scheme"] = endpoint.scheme or "https"
        if options.region:
            kwargs["region"] = options.region
        filesystem = pafs.S3FileSystem(
            **kwargs,
            connect_timeout=5,
            request_timeout=30,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
        )
        root = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        return Store(filesystem, root, uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"unsupported lake URI scheme {parsed.scheme!r}; use a directory or s3://bucket/prefix")
    local = Path(parsed.path if parsed.scheme == "file" else uri).resolve()
    local.mkdir(parents=True, exist_ok=True)
    return Store(pafs.LocalFileSystem(), str(local), str(local))


def replaced_by(store: Store, key: str) -> list[str]:
    """Keys a compacted file replaces (read from its Parquet footer); [] for an ordinary file."""
    if "/part-compacted-" not in key:
        return []
    metadata = pq.read_metadata(store.path(key), filesystem=store.fs).metadata or {}
    return list(json.loads(metadata.get(REPLACES_KEY, b"[]")))
