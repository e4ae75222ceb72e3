"""The reporter's side of the aggregate: paths from the pass registry, never from the message.

The aggregate message is data from the broker. The folders a pass writes to (its output folder,
the README to update, impl/base to bundle) are what `submit` wrote into the pass's registry key
when it named the pass (controller.run.status.PASS_KEY); the cache is the reporter's own. A
message for a pass the registry does not know, or with a name that is not a plain file name,
writes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from cluster.cache import Cache
from cluster.errors import InfrastructureError
from cluster.tasks import PassSummary
from controller.results.finish import PassSpec, finish_pass

PASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

Registry = Callable[[str], "str | bytes | None"]  # pass name -> the registry key's JSON


def registered_outputs(name: str, registry: Registry) -> dict:
    """The pass's `outputs` entry in the registry: outputDir, updateReadme, baseDir."""
    if not PASS_NAME.fullmatch(name):
        raise InfrastructureError(f"aggregate for a pass named {name!r}: not a pass name")
    raw = registry(name)
    if raw is None:
        raise InfrastructureError(f"aggregate for pass {name!r}, which no submit registered")
    outputs = json.loads(raw).get("outputs")
    if not isinstance(outputs, dict):
        raise InfrastructureError(f"pass {name!r} has no outputs in its registry entry")
    return outputs


def finish_registered(payloads: list[object], spec_data: dict, registry: Registry,
                      cache: Cache) -> PassSummary:
    """finish_pass with the message's paths replaced by the registry's and the reporter's."""
    spec = PassSpec.model_validate(spec_data)
    outputs = registered_outputs(spec.name, registry)
    trusted = spec.model_copy(update={
        "output_dir": outputs.get("outputDir") or "",
        "update_readme": outputs.get("updateReadme") or None,
        "base_dir": outputs.get("baseDir") or "",
        "cache_dir": str(cache.root)})
    return finish_pass(trusted, payloads)
