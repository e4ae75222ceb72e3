"""The aggregate message chooses no path: output folder, README, impl/base and cache come from
the pass registry (a fake here) and the reporter's own cache; carried-back outputs stay inside
the folder submit writes them to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cluster.cache import Cache
from cluster.errors import InfrastructureError
from cluster.models import Status
from cluster.tasks import PassSummary
from controller.results.deliver import deliver
from controller.results.registered import finish_registered
from tests.controller.test_finish import case, payload, spec_for

README = "# r\n<!--INTEROP_DASHBOARD_START-->\nstale dashboard\n<!--INTEROP_DASHBOARD_END-->\n"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def crafted(tmp_path: Path):
    """A pass's real spec, and a message for it whose paths all point at a folder elsewhere."""
    tests = [case("a", "a")]
    spec = spec_for(tmp_path, tests)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "base").mkdir(parents=True)
    (elsewhere / "README.md").write_text(README)
    (elsewhere / "base" / "secret").write_text("not for the zip")
    message = spec.model_dump(mode="json", by_alias=True)
    message.update({"outputDir": str(elsewhere / "out"), "updateReadme": str(elsewhere / "README.md"),
                    "cacheDir": str(elsewhere / "cache"), "baseDir": str(elsewhere / "base")})
    return spec, message, [payload(tests[0], Status.PASS)], elsewhere


def fake_registry(name: str, outputs: dict):
    """The registry key submit writes when it names the pass, as Redis would return it."""
    entries = {name: json.dumps({"claimed": True, "outputs": outputs})}
    return entries.get


def test_a_crafted_message_writes_only_where_the_registry_says(tmp_path: Path, crafted) -> None:
    spec, message, payloads, elsewhere = crafted
    before = snapshot(elsewhere)
    own = tmp_path / "reporter-cache"
    registered = {"outputDir": str(tmp_path / "out"), "updateReadme": None,
                  "baseDir": spec.base_dir}
    summary = finish_registered(payloads, message, fake_registry(spec.name, registered), Cache(own))
    assert snapshot(elsewhere) == before, "nothing changed outside the pass's folders"
    assert not (elsewhere / "out").exists() and not (elsewhere / "cache").exists()
    assert yaml.safe_load((tmp_path / "out" / "results.yaml").read_text())["tests"][0]["status"] == "pass"
    assert Path(summary.test_pass_zip) == own / "test-passes" / f"{spec.name}.zip"
    import zipfile
    with zipfile.ZipFile(summary.test_pass_zip) as archive:
        names = archive.namelist()
    assert not any("secret" in name for name in names), names
    assert f"{spec.name}/base/Makefile" in names  # impl/base from the registry, not the message


def test_an_attached_pass_gets_its_outputs_back_and_nothing_is_written_by_the_reporter(
        tmp_path: Path, crafted) -> None:
    spec, message, payloads, elsewhere = crafted
    before = snapshot(elsewhere)
    registered = {"outputDir": None, "updateReadme": None, "baseDir": spec.base_dir}
    summary = finish_registered(payloads, message, fake_registry(spec.name, registered),
                                Cache(tmp_path / "reporter-cache"))
    assert snapshot(elsewhere) == before
    assert not (tmp_path / "out").exists()
    assert {"results.yaml", "results.md", "results.html", "output.log",
            "logs/a_x_a_tcp.log"} <= set(summary.outputs)
    assert summary.results_yaml is None
    readme = tmp_path / "mine" / "README.md"
    readme.parent.mkdir()
    readme.write_text(README)
    wire = PassSummary.model_validate(json.loads(json.dumps(summary.to_message())))
    local = deliver(wire, tmp_path / "mine" / "x", readme)
    assert (tmp_path / "mine" / "x" / "logs" / "a_x_a_tcp.log").is_file()
    assert local.results_yaml == str(tmp_path / "mine" / "x" / "results.yaml")
    assert local.outputs is None
    assert "stale dashboard" not in readme.read_text() and "hole-punch-full" in readme.read_text()


@pytest.mark.parametrize("name", ["../../escape", "/abs", "a/../../b", "", "logs/./x", "c:\\x"])
def test_carried_outputs_never_leave_the_output_folder(tmp_path: Path, name: str) -> None:
    summary = PassSummary(name="p", exit_code=0, partial=False, passed=0, failed=0, flaky=0,
                          known_failures=0, total=0, missing=0, test_pass_zip="z",
                          outputs={"results.md": "# r\n", name: "x"})
    with pytest.raises(InfrastructureError, match="plain relative"):
        deliver(summary, tmp_path / "out" / "deep", None)
    assert not (tmp_path / "escape").exists() and not Path("/abs").exists()


def test_a_pass_the_registry_does_not_know_writes_nothing(tmp_path: Path, crafted) -> None:
    spec, message, payloads, elsewhere = crafted
    own = tmp_path / "reporter-cache"
    with pytest.raises(InfrastructureError, match="no submit registered"):
        finish_registered(payloads, message, fake_registry("another-pass", {}), Cache(own))
    message["name"] = "../../elsewhere/x"
    with pytest.raises(InfrastructureError, match="not a pass name"):
        finish_registered(payloads, message, fake_registry(message["name"], {"outputDir": None}),
                          Cache(own))
    assert not own.exists() and not (tmp_path / "out").exists()
