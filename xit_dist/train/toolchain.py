"""Build tools come from this interpreter's environment, as if it were activated.

DeepSpeed compiles some ops the first time they are used (on CPU, a shared-memory comm op: 30-45 s
on two cores) with whichever ``ninja`` is first on PATH, and caches the build under
``TORCH_EXTENSIONS_DIR``. DeepSpeed's own dependency puts a ninja in the virtual environment's
``bin/``; a machine can have another (Debian's 1.11 here, against the environment's 1.13). The two
versions record builds differently in the cache's ``.ninja_log``, so a process that finds the
other ninja rebuilds the op from scratch. Drivers started without activating the environment
and cluster nodes started with it used to do exactly that to each other, twice per test run.
"""

from __future__ import annotations

import os
import sys


def interpreter_bin_first() -> None:
    """Put the directory of ``sys.executable`` (a virtual environment's ``bin/``) first on PATH."""
    bin_dir = os.path.dirname(sys.executable)
    parts = [part for part in os.environ.get("PATH", "").split(os.pathsep) if part]
    if parts[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *(part for part in parts if part != bin_dir)])
