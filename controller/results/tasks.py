"""The chord's body: `aggregate` runs on the controller's queue and writes the pass's outputs."""

from __future__ import annotations

from cluster.app import app
from cluster.tasks import AGGREGATE
from controller.results.finish import PassSpec, finish_pass


@app.task(name=AGGREGATE, acks_late=True)
def aggregate(payloads: list[object], spec_data: dict) -> dict:
    return finish_pass(PassSpec.model_validate(spec_data), payloads).to_message()
