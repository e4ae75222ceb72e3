"""Write a pass's outputs on `submit`'s side, from the summary its aggregate returned.

The reporter that ran the aggregate may be on another host, or in a container that mounts only
the checkout and the cache; so it sends results.yaml, results.md, output.log and the logs back
through the result backend and `submit` writes them where its user asked. The test-pass zip
stays where the reporter wrote it (the cache), named by its path.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path, PurePosixPath

from cluster.cache import atomic_write
from cluster.errors import InfrastructureError
from cluster.tasks import PassSummary
from controller.results.html import link_from
from controller.results.report import inject_dashboard


def safe_relative(name: str) -> PurePosixPath:
    """`name` as a plain relative path under its folder, else InfrastructureError: the names
    come from the broker, and none may climb out of the output folder."""
    path = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or path.is_absolute()
            or any(part in ("", ".", "..") for part in name.split("/")) or len(name) > 255):
        raise InfrastructureError(f"the aggregate returned an output named {name!r}: not a "
                                  "plain relative file name")
    return path


def deliver(summary: PassSummary, output_dir: Path, update_readme: Path | None) -> PassSummary:
    """Write the carried outputs under `output_dir` (and the dashboard into `update_readme`);
    the summary with their local paths. A summary whose reporter wrote them itself passes
    through unchanged."""
    outputs = summary.outputs
    if outputs is None:
        return summary
    files = {safe_relative(name): text for name, text in outputs.items()}  # all checked first
    if PurePosixPath("results.md") not in files:
        raise InfrastructureError("the aggregate returned outputs without results.md")
    captures = {safe_relative(name): data for name, data in (summary.captures or {}).items()}
    for name, text in files.items():
        atomic_write(output_dir.joinpath(*name.parts), text)
    for name, data in captures.items():
        try:
            atomic_write(output_dir.joinpath(*name.parts), base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise InfrastructureError(f"the aggregate returned capture {name} that is not "
                                      f"base64: {exc}") from None
    if update_readme is not None:
        readme = update_readme.read_text(encoding="utf-8")
        atomic_write(update_readme, inject_dashboard(readme, outputs["results.md"],
                                                     str(update_readme),
                                                     link_from(update_readme,
                                                               output_dir / "results.html")))
    return summary.model_copy(update={
        "outputs": None, "captures": None, "results_yaml": str(output_dir / "results.yaml"),
        "results_md": str(output_dir / "results.md"),
        "results_html": str(output_dir / "results.html")})
