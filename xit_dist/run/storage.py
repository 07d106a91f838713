"""Is ``output_dir`` shared by every node? Phase outputs and Ray Train's checkpoints live
there, and workers on other machines read them. A multi-machine cluster with ``output_dir`` on a
local disk would train, then fail (or silently diverge) in the next phase: refuse it up front."""

from __future__ import annotations

from pathlib import Path

from xit_dist.errors import XitError

# Filesystems every node of a cluster can mount: network and cluster filesystems, and FUSE
# mounts of object stores (gcsfuse, s3fs, mountpoint-s3, blobfuse, ...).
SHARED_FILESYSTEMS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs", "glusterfs",
    "wekafs", "9p", "virtiofs", "afs", "panfs", "orangefs", "juicefs",
}


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/mounts")) -> str:
    """The type of the filesystem holding ``path`` (the longest mount point that contains it)."""
    path = path.resolve()
    best, kind = "", "unknown"
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = path == Path(mount_point) or str(path).startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fields[2]
    return kind


def is_shared(kind: str) -> bool:
    return kind in SHARED_FILESYSTEMS or kind.startswith("fuse.")


def check_shared_storage(output_dir: Path, node_hosts: set[str], assume_shared: bool, fs_kind: str | None = None) -> None:
    """One host: any directory works. Several hosts: output_dir must be on shared storage."""
    if len(node_hosts) <= 1 or assume_shared:
        return
    kind = fs_kind or filesystem_type(output_dir)
    if not is_shared(kind):
        raise XitError(
            f"output_dir {output_dir}: on a local {kind} filesystem, but the cluster spans {len(node_hosts)} machines; "
            "put output_dir on storage every node mounts (NFS, Lustre, a FUSE-mounted bucket, ...) "
            "or set distributed.assume_shared_storage: true if it is shared"
        )


def cluster_hosts() -> set[str]:
    import ray

    return {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}
