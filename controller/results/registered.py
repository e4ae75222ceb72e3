"""The pass registry: one key per pass on the broker's Redis, `holepunch:pass:<name>`.

`submit` claims the key when it names the pass (so two passes never share a name), records the
folders the pass may write to (its output folder, the README to update, impl/base to bundle),
then the chord's IDs; `status` reads the IDs back, and the reporter's side of the aggregate
takes its paths from here, never from the message. The aggregate message is data from the
broker; the cache is the reporter's own. A message for a pass the registry does not know, or
with a name that is not a plain file name, writes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from cluster.cache import Cache
from cluster.errors import InfrastructureError
from cluster.tasks import PassSummary
from controller.results.finish import PassSpec, finish_pass

PASS_KEY = "holepunch:pass:{}"
PASS_KEY_TTL = 7 * 24 * 3600
PASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

Registry = Callable[[str], "str | bytes | None"]  # pass name -> the registry key's JSON


def claim_pass_name(redis_client, cache: Cache, name: str) -> str:
    """The seed's pass name, made unique: two passes started in the same second on one broker
    (or one cache) get `<name>`, `<name>-2`, ... The claim is a SET NX on the broker, so two
    controllers cannot both win; the zip check covers embedded passes with their own Redis."""
    for n in range(1, 1000):
        candidate = name if n == 1 else f"{name}-{n}"
        if (cache.root / "test-passes" / f"{candidate}.zip").exists():
            continue
        if redis_client.set(PASS_KEY.format(candidate), json.dumps({"claimed": True}), nx=True,
                            ex=PASS_KEY_TTL):
            return candidate
    raise InfrastructureError(f"no free test-pass name after {name}-999")


def outputs_entry(output_dir: Path, update_readme: Path | None, base_dir: Path,
                  detached: bool) -> dict:
    """What the reporter may write, for the registry: a detached pass's outputs (the reporter
    was asked whether it sees them); an attached pass's come back to submit."""
    return {"outputDir": str(output_dir) if detached else None,
            "updateReadme": str(update_readme) if detached and update_readme else None,
            "baseDir": str(base_dir)}


def record_outputs(redis_client, name: str, outputs: dict) -> None:
    """Beside the claim, before the chord is sent: the aggregate may run at once."""
    redis_client.set(PASS_KEY.format(name), json.dumps({"claimed": True, "outputs": outputs}),
                     ex=PASS_KEY_TTL, xx=True)


def record_chord(redis_client, name: str, group_id: str, aggregate_id: str, total: int,
                 output_dir: Path, outputs: dict) -> None:
    """The sent chord's IDs, for `status` to follow a detached pass."""
    redis_client.set(PASS_KEY.format(name), json.dumps({
        "group": group_id, "aggregate": aggregate_id, "total": total,
        "outputDir": str(output_dir), "outputs": outputs}), ex=PASS_KEY_TTL)


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
