"""The check of an ``output_dir`` in an object store (``s3://bucket/prefix``, ``gs://...``), run
before any cluster resources are used, so that a wrong endpoint, refused credentials, a missing
bucket or a missing permission is one line at submit time rather than a failure hours into a run
(the files themselves: tracking/object_files.py).

SeaweedFS creates a missing bucket on the first write into it, so a write probe cannot tell that
a bucket is missing: its existence is checked first (``get_file_info`` on the bucket, a
HeadBucket), and nothing is written when it is missing.
"""

from __future__ import annotations

import os
import re
import uuid

import pyarrow.fs as pafs

from xit_dist.errors import XitError
from xit_dist.tracking.object_files import open_output_store

CHECK_ATTEMPTS = 2
PROBE_PREFIX = ".xit-store-probe-"
CREDENTIALS_REFUSED = {"SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID", "EXPIRED_TOKEN", "INVALID_CLIENT_TOKEN_ID"}


def describe_endpoint(filesystem: pafs.FileSystem | None) -> str:
    """Where the store's requests go, as the user set it (or AWS's default)."""
    if isinstance(filesystem, pafs.S3FileSystem):
        options = filesystem.__reduce__()[1][0]
        return options["endpoint_override"] or f"AWS S3 (region {options['region'] or 'from the AWS config'})"
    if isinstance(filesystem, pafs.GcsFileSystem):
        return filesystem.__reduce__()[1][0]["endpoint_override"] or "Google Cloud Storage"
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "the default endpoint"


def describe_credentials(uri: str) -> str:
    """Which environment variables the credentials came from, never their values in full."""
    if uri.startswith("gs://"):
        return "the Google credentials (GOOGLE_APPLICATION_CREDENTIALS or the default account)"
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    if not key:
        return "the AWS SDK's default credentials (AWS_ACCESS_KEY_ID is not set)"
    shown = f" ({key[:4]}...)" if len(key) >= 12 else ""
    return f"the credentials in AWS_ACCESS_KEY_ID{shown} / AWS_SECRET_ACCESS_KEY"


def explain(error: OSError, uri: str, filesystem: pafs.FileSystem | None, action: str) -> XitError:
    """One line for a failed request: the field, the URI, and what is wrong in the user's terms.
    """
    message, code = str(error), error_code(error)
    where = f"output_dir {uri!r}"
    if code in ("NETWORK_CONNECTION", "UNAVAILABLE"):
        detail = message.split("Details: ", 1)[-1] if "Details: " in message else message
        return XitError(f"{where}: cannot reach the object store at {describe_endpoint(filesystem)} ({first_line(detail)}); check AWS_ENDPOINT_URL")
    if code in CREDENTIALS_REFUSED or code == "UNAUTHENTICATED":
        return XitError(f"{where}: the object store at {describe_endpoint(filesystem)} refused {describe_credentials(uri)} ({code}) while trying to {action}")
    if code in ("NO_SUCH_BUCKET", "NOT_FOUND"):
        return XitError(f"{where}: the bucket does not exist at {describe_endpoint(filesystem)}")
    if code in ("ACCESS_DENIED", "PERMISSION_DENIED"):
        return XitError(f"{where}: access denied to {action} with {describe_credentials(uri)} (wrong credentials or a missing permission)")
    return XitError(f"{where}: cannot {action}: {first_line(redact(message))}")


def error_code(error: OSError) -> str:
    """The store's error code in pyarrow's message: ``AWS Error <CODE> during <Operation>`` for
    S3, a gRPC status name for GCS; empty when there is none."""
    found = re.search(r"AWS Error (\w+)|\b(UNAUTHENTICATED|PERMISSION_DENIED|NOT_FOUND|UNAVAILABLE)\b", str(error))
    return (found[1] or found[2]) if found else ""


def bucket_missing(filesystem: pafs.FileSystem, bucket: str) -> bool:
    """Whether ``bucket`` does not exist (a HeadBucket). Its 403 has no body to say why (refused
    credentials or no permission): that is left to the listing that follows to tell."""
    try:
        return filesystem.get_file_info(bucket).type == pafs.FileType.NotFound
    except OSError as error:
        if error_code(error) in ("ACCESS_DENIED", "PERMISSION_DENIED"):
            return False
        raise


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def redact(text: str) -> str:
    """``text`` with the secret and the access key id out, should a store echo them."""
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            text = text.replace(os.environ[name], f"<{name}>")
    return text


def check_output_store(uri: str) -> None:
    """Prove, before a run starts, that ``uri`` is usable: its bucket exists, and the credentials
    may list under its prefix, write there and delete (a small probe object, written and
    removed). Raises ``XitError`` (one line) saying what is wrong."""
    filesystem, action = None, "open the store"
    if "?" in uri or "#" in uri:
        raise XitError(f"output_dir {uri!r}: options in the URI are not supported; give the endpoint in AWS_ENDPOINT_URL")
    try:
        filesystem, root = open_output_store(uri, attempts=CHECK_ATTEMPTS)
        bucket = root.split("/", 1)[0]
        action = f"read bucket {bucket!r}"
        if bucket_missing(filesystem, bucket):
            raise XitError(f"output_dir {uri!r}: bucket {bucket!r} does not exist at {describe_endpoint(filesystem)}")
        action = f"list {uri}"
        filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        probe = f"{root}/{PROBE_PREFIX}{uuid.uuid4().hex}"
        action = f"write {probe!r}"
        with filesystem.open_output_stream(probe) as out:
            out.write(b"xit-dist checks that it may write here\n")
        action = f"delete {probe!r}"
        filesystem.delete_file(probe)
    except OSError as error:
        raise explain(error, uri, filesystem, action) from None
