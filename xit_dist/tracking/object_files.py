"""Files of an ``output_dir`` in an object store (``s3://bucket/prefix``, ``gs://...``), read and
written with pyarrow.fs (the layer Ray Train writes its ``storage_path`` with), and the local
copies each node keeps of them.

Every node has its own copy of what it reads or writes of a bucket's ``output_dir`` under
``$XIT_DIST_CACHE/outputs/<scheme>/<bucket>/<prefix>/`` (the *mirror*): the driver builds a
phase's outputs there and uploads them, a worker downloads an upstream encoder there once per
node (``local_copy``). Nodes never read each other's mirrors: what they share is the bucket.

What pyarrow 25 and SeaweedFS 4.48 (``weed mini``, tests/test_object_store.py) do, which this
rests on:

- ``FileSystem.from_uri`` takes the S3 endpoint from ``AWS_ENDPOINT_URL_S3``, else
  ``AWS_ENDPOINT_URL``, by itself; the ``S3FileSystem`` constructor does not. Credentials are the
  AWS SDK's (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, then config files, then instance
  metadata). Without an endpoint, ``from_uri`` asks AWS for the bucket's region (a network call).
- Timeouts and retries cannot be given in the URI, so the filesystem ``from_uri`` made is rebuilt
  from its own pickled options with them bounded. ``request_timeout`` is honoured on Linux too
  (curl gives up below 1 byte/s for that long), whatever pyarrow's docstring says: a closed port
  fails at once, a port that never answers within about 2 x (timeout + backoff).
"""

from __future__ import annotations

import datetime
import functools
import os
import shutil
from pathlib import Path

import pyarrow.fs as pafs

from xit_dist.tracking.locks import exclusive

SCHEMES = ("s3://", "gs://")
CONNECT_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 3.0
ATTEMPTS = 3
MIRRORS_DIR = "outputs"
COPIED_SUFFIX = ".xit-copied"   # beside a complete local copy of a folder: it need not be downloaded again


def is_object_store_uri(value: object) -> bool:
    """Whether ``value`` names an object store (``s3://``, ``gs://``); local paths and
    ``file://`` URIs do not."""
    return isinstance(value, str) and value.startswith(SCHEMES)


def cache_root() -> Path:
    """This node's cache (``XIT_DIST_CACHE``, default ``~/.cache/xit-dist``): built-in assets and
    the mirrors of buckets."""
    return Path(os.environ.get("XIT_DIST_CACHE", "~/.cache/xit-dist")).expanduser()


def open_output_store(uri: str, attempts: int = ATTEMPTS) -> tuple[pafs.FileSystem, str]:
    """The filesystem of ``uri`` and the path of its root in it (``bucket/prefix``), with
    connection timeouts and retries bounded so that a dead endpoint fails instead of hanging.
    May raise ``OSError`` (from_uri resolves a bucket's region over the network)."""
    if not is_object_store_uri(uri):
        raise ValueError(f"not an object store URI: {uri!r}")
    scheme, rest = uri.split("://", 1)
    filesystem = _bucket_filesystem(scheme, rest.split("/", 1)[0], attempts, _environment_key())
    return filesystem, rest.rstrip("/")


def _environment_key() -> tuple[str | None, ...]:
    """What a filesystem is opened with from the environment: one cached per set of values."""
    names = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    return tuple(os.environ.get(name) for name in names)


@functools.lru_cache(maxsize=16)
def _bucket_filesystem(scheme: str, bucket: str, attempts: int, environment: tuple) -> pafs.FileSystem:
    filesystem, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}")
    rebuild, (options,) = filesystem.__reduce__()
    if isinstance(filesystem, pafs.S3FileSystem):
        retries = pafs.AwsStandardS3RetryStrategy(max_attempts=attempts)
        options = {**options, "connect_timeout": CONNECT_TIMEOUT_S, "request_timeout": REQUEST_TIMEOUT_S, "retry_strategy": retries}
    elif isinstance(filesystem, pafs.GcsFileSystem):
        limit = datetime.timedelta(seconds=attempts * (CONNECT_TIMEOUT_S + REQUEST_TIMEOUT_S))
        options = {**options, "retry_time_limit": limit}
    return rebuild(options)


# ------------------------------------------------------------------ single objects


def exists(uri: str) -> bool:
    """Whether an object (or a prefix with objects under it) is at ``uri``."""
    filesystem, path = open_output_store(uri)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def write_text(uri: str, text: str) -> None:
    filesystem, path = open_output_store(uri)
    with filesystem.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(uri: str) -> str:
    filesystem, path = open_output_store(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def location_exists(location: str) -> bool:
    """Whether a file is at ``location``: a bucket URI or a local path."""
    return exists(location) if is_object_store_uri(location) else Path(location).exists()


def read_text_if_any(uri: str) -> str | None:
    """The object's text, or None when there is none at ``uri``."""
    filesystem, path = open_output_store(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def upload_file(local: str | os.PathLike, uri: str) -> None:
    """Copy a local file to ``uri`` (streamed, in parts for large files)."""
    filesystem, path = open_output_store(uri)
    pafs.copy_files(os.fspath(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)


def download_file(uri: str, local: str | os.PathLike) -> None:
    """Copy the object at ``uri`` to a local file, creating its folder."""
    filesystem, path = open_output_store(uri)
    os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
    pafs.copy_files(path, os.fspath(local), source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())


# ------------------------------------------------------------------ folders


def upload_tree(local: str | os.PathLike, uri: str) -> None:
    """Every file under the local folder ``local`` to the same names under ``uri`` (what was
    there under other names stays: callers upload into fresh prefixes, or the same files again)."""
    filesystem, path = open_output_store(uri)
    pafs.copy_files(os.fspath(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem,
                    use_threads=True)


def download_tree(uri: str, local: str | os.PathLike) -> None:
    """Every object under ``uri`` into the local folder ``local`` (created)."""
    filesystem, path = open_output_store(uri)
    os.makedirs(local, exist_ok=True)
    pafs.copy_files(path, os.fspath(local), source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem(),
                    use_threads=True)


def delete_tree(uri: str) -> None:
    """Every object under ``uri`` (none there: nothing to do)."""
    filesystem, path = open_output_store(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
        filesystem.delete_dir(path)


# ------------------------------------------------------------------ this node's mirror


def mirror_root() -> Path:
    return cache_root() / MIRRORS_DIR


def mirror_path(uri: str) -> Path:
    """This node's local place for ``uri``: ``<cache>/outputs/<scheme>/<bucket>/<key>``."""
    scheme, rest = uri.split("://", 1)
    return mirror_root() / scheme / rest.strip("/")


def uri_of_mirror(path: str | os.PathLike) -> str | None:
    """The bucket URI a path of this node's mirror stands for; None for any other path."""
    try:
        scheme, *rest = Path(path).relative_to(mirror_root()).parts
    except ValueError:
        return None
    return f"{scheme}://{'/'.join(rest)}" if rest and f"{scheme}://" in SCHEMES else None


def shared_location(path: str | os.PathLike) -> str:
    """How another node names ``path``: its bucket URI for a path of the mirror, else the path."""
    return uri_of_mirror(path) or os.fspath(path)


def local_path(location: str) -> Path:
    """Where this node keeps what ``location`` names: the mirror's place for a bucket URI."""
    return mirror_path(location) if is_object_store_uri(location) else Path(location)


def read_kept_text(path: Path) -> str | None:
    """A file of the output tree: from the bucket when ``path`` is in this node's mirror (another
    node may have written it), else from disk; None when there is none."""
    remote = uri_of_mirror(path)
    if remote is not None:
        return read_text_if_any(remote)
    return path.read_text() if path.is_file() else None


def write_kept_text(path: Path, text: str) -> None:
    """A file of the output tree, written on disk and, in a mirror, uploaded to the bucket."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    publish_file(path)


def publish_file(local: Path) -> None:
    """A file of the mirror uploaded to the bucket (nothing for a local output tree)."""
    remote = uri_of_mirror(local)
    if remote is not None:
        upload_file(local, remote)


def fetch_kept_file(local: Path) -> bool:
    """A file of the output tree on this node: from the bucket into the mirror (when the bucket
    has it); whether it is here now."""
    remote = uri_of_mirror(local)
    if remote is not None and exists(remote):
        download_file(remote, local)
    return local.is_file()


def publish_tree(local: Path) -> None:
    """A folder of the mirror uploaded to the bucket (nothing for a local output tree)."""
    remote = uri_of_mirror(local)
    if remote is not None and local.is_dir():
        upload_tree(local, remote)


def mark_copied(local: Path) -> None:
    """``local`` (a folder of the mirror) holds everything its URI does: ``local_copy`` keeps it."""
    local.with_name(local.name + COPIED_SUFFIX).touch()


def forget_copy(local: Path) -> None:
    """``local`` is rewritten here: no longer a complete copy of its URI (until ``mark_copied``)."""
    local.with_name(local.name + COPIED_SUFFIX).unlink(missing_ok=True)
    shutil.rmtree(local, ignore_errors=True)


def local_copy(location: str) -> str:
    """A folder on this node with what ``location`` holds: ``location`` itself when it is local
    (or a hub id), else the mirror's copy of the bucket folder, downloaded once per node (the
    workers of a node share it; a half-done download is redone, never used)."""
    if not is_object_store_uri(location):
        return location
    local = mirror_path(location)
    marker = local.with_name(local.name + COPIED_SUFFIX)
    with exclusive(local.with_name(local.name + ".xit-lock")):  # one download per node: the node's other processes wait
        if not marker.is_file():
            partial = local.with_name(local.name + ".xit-partial")
            shutil.rmtree(partial, ignore_errors=True)
            download_tree(location, partial)
            shutil.rmtree(local, ignore_errors=True)
            partial.rename(local)
            marker.touch()
    return str(local)
