"""Object store: one interface, an S3/MinIO backend and an embedded filesystem backend.

Keys are `/`-separated relative paths such as `images/ab/ab12….jpg`. Every key is validated
before it reaches a backend, so no key can climb out of the bucket or the data directory.
Writes are atomic: readers see either the old object, the new one, or none.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.common.settings import Settings

# A segment becomes a file name in the embedded store: at most 255 bytes (NAME_MAX) on every Linux filesystem.
_SEGMENT = r"[A-Za-z0-9._=+@-]{1,255}"
_KEY_SEGMENT = re.compile(rf"^{_SEGMENT}$")
KEY_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*$"  # what validate_key accepts but '.' and '..' segments
MAX_KEY_LENGTH = 900


class InvalidKeyError(ValueError):
    """A key that could escape its namespace or that no backend can store."""


class ObjectNotFoundError(KeyError):
    """The key names no object."""


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise InvalidKeyError."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"object key must be 1-{MAX_KEY_LENGTH} characters")
    if key.startswith("/") or "\\" in key:
        raise InvalidKeyError(f"object key {key!r} must be a relative '/'-separated path")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(f"object key {key!r} has an empty, '.' or '..' segment")
        if not _KEY_SEGMENT.match(segment):
            raise InvalidKeyError(
                f"object key {key!r} may only use letters, digits and . _ = + @ - in each segment, 255 at most"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """Like validate_key, but an empty prefix or one ending in '/' is allowed."""
    stripped = prefix.rstrip("/")
    if stripped:
        validate_key(stripped)
    return prefix


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(namespace: str, digest: str, extension: str) -> str:
    """Content-addressed key: `<namespace>/<first two hex>/<sha256>.<ext>`."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise InvalidKeyError(f"{digest!r} is not a sha256 hex digest")
    return validate_key(f"{namespace}/{digest[:2]}/{digest}.{extension.lstrip('.')}")


class ObjectStore(ABC):
    """What every service needs from storage; keys are validated by the public methods."""

    @abstractmethod
    def _put(self, key: str, data: io.BufferedIOBase | io.BytesIO, length: int, content_type: str) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes: ...

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[str]: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def check(self) -> None:
        """Raise if the backend cannot be reached (used by /readyz)."""

    def url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str | None:
        """A time-limited download URL, or None where the backend cannot sign one."""
        validate_key(key)
        return None

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        validate_key(key)
        self._put(key, io.BytesIO(data), len(data), content_type)
        return key

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> str:
        validate_key(key)
        with open(path, "rb") as handle:
            self._put(key, handle, os.fstat(handle.fileno()).st_size, content_type)
        return key

    def put_json(self, key: str, value: Any) -> str:
        return self.put_bytes(key, json.dumps(value, indent=1, default=str).encode(), "application/json")

    def get_bytes(self, key: str) -> bytes:
        return self._get(validate_key(key))

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def download(self, key: str, path: Path) -> Path:
        """Copy an object to a local file (atomically) and return the path."""
        data = self.get_bytes(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        return path

    def exists(self, key: str) -> bool:
        return self._exists(validate_key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under `prefix`, recursively, in lexicographic order."""
        return self._list(validate_prefix(prefix))

    def delete(self, key: str) -> None:
        self._delete(validate_key(key))

    def put_content_addressed(self, namespace: str, data: bytes, extension: str, content_type: str) -> tuple[str, bool]:
        """Store `data` under its sha256; return (key, created). Existing content is not rewritten."""
        key = content_key(namespace, sha256_hex(data), extension)
        if self.exists(key):
            return key, False
        self.put_bytes(key, data, content_type)
        return key, True


def atomic_write(path: Path, data: bytes | io.BufferedIOBase | io.BytesIO, durable: bool = True) -> None:
    """Write through a temp file renamed into place: readers see the old file or the whole new one.

    `durable` also fsyncs before the rename (objects); scratch caches that can be rebuilt skip it.
    """
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                while chunk := data.read(1024 * 1024):
                    handle.write(chunk)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


class LocalStore(ObjectStore):
    """Objects as files under `root`; a write goes to a temp file renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # validate_key already forbids '..'; this also stops a symlink planted inside the root.
        if not path.is_relative_to(self.root):
            raise InvalidKeyError(f"object key {key!r} resolves outside the store")
        return path

    def path_of(self, key: str) -> Path:
        """The file behind a key (embedded mode lets local tools read objects in place)."""
        return self._path(validate_key(key))

    def _put(self, key: str, data: io.BufferedIOBase | io.BytesIO, length: int, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key) from None

    def _exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _list(self, prefix: str) -> Iterator[str]:
        directory = prefix.rpartition("/")[0]
        base = self._path(directory) if directory else self.root
        if not base.is_dir():
            return iter(())
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
            for filename in filenames:
                if filename.startswith("."):
                    continue  # in-flight temp files are never visible
                key = Path(dirpath, filename).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"data directory {self.root} is not writable")


class S3Store(ObjectStore):
    """MinIO/S3 through the `minio` client; S3 PUTs are atomic by nature."""

    def __init__(self, settings: Settings) -> None:
        from minio import Minio

        assert settings.s3_endpoint is not None
        self.bucket = settings.s3_bucket
        self.client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=settings.s3_secure,
            region=settings.s3_region,
        )
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def _put(self, key: str, data: io.BufferedIOBase | io.BytesIO, length: int, content_type: str) -> None:
        self.client.put_object(self.bucket, key, data, length, content_type=content_type, part_size=16 * 1024 * 1024)

    def _get(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFoundError(key) from None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise
        return True

    def _list(self, prefix: str) -> Iterator[str]:
        for item in self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True):
            if not item.is_dir:
                yield item.object_name

    def _delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def check(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            raise OSError(f"bucket {self.bucket} is missing")

    def url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str | None:
        return self.client.presigned_get_object(self.bucket, validate_key(key), expires=expires)


def make_store(settings: Settings) -> ObjectStore:
    """S3 when an endpoint is configured, else the embedded store under data_dir/objects."""
    if settings.s3_endpoint:
        return S3Store(settings)
    return LocalStore(settings.data_dir / "objects")
