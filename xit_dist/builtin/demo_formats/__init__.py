"""Demo data for the task formats beyond NLI and PAWS-X (``xit_dist.builtin.demo_data`` holds the
shared synthetic world and those two). One module per format; each module provides:

- ``VERSION``: a string, bumped whenever its output changes (cached builds are keyed on it);
- ``DEMO_LANGUAGES``: ``{task: (languages...)}`` for the tasks it writes;
- ``files(world: DemoWorld) -> {"<hub_id>/<config>/<split>.jsonl": [rows...]}`` in the hub's
  exact schema (a ``str`` row is written as one text line: release-format files such as CCG's);
- ``corpus(world) -> [sentences]``: extra text for the built-in tokenizer, so every word the
  module writes is in its vocabulary (question words, options, tags...); may be empty.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Module names under this package, in build order. Add a format's module here.
MODULES: tuple[str, ...] = ("glue_nli", "multiple_choice", "token_tagging", "retrieval", "extractive_qa")


def demo_builders() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in MODULES]
