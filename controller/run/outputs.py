"""Before the first test: will this pass's outputs reach where its user asked?

An attached `submit` writes the outputs itself (controller.results.deliver), so its own host
must be able to write the output folder and the README. A detached pass is finished by the
reporter alone, so the reporter must see those very folders: `submit` leaves a probe file with a
random token there and asks the reporter (a task on the controller queue) to read it back and
write beside it. Anything that cannot work is refused now, with exit 2, not after the last test.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import celery.exceptions

from cluster.app import configure
from cluster.cache import atomic_write
from cluster.errors import InfrastructureError, UsageError
from controller.results.report import inject_dashboard
from controller.results.tasks import PROBE_PREFIX, REPORTER_SEES
from controller.run.pass_plan import PassOutputs
from controller.run.where import ExternalBroker, Where

REPORTER_ANSWER_SECONDS = 30


def check_outputs(outputs: PassOutputs, where: Where, timeout: int, queue: str) -> None:
    """Refuse now what could not be written after the last test: here always, and by the
    reporter on `queue` too when the pass is detached."""
    check_local(outputs.output_dir, outputs.update_readme)
    if isinstance(where, ExternalBroker) and where.detach:
        app = configure(where.broker, timeout)
        check_reporter_sees(app, outputs.output_dir, "--output-dir", queue)
        if outputs.update_readme is not None:
            check_reporter_sees(app, outputs.update_readme.parent, "--update-readme", queue)


def check_local(output_dir: Path, update_readme: Path | None) -> None:
    """The output folder can be made and written here; the README exists and has its markers."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = atomic_write(output_dir / f"{PROBE_PREFIX}{secrets.token_hex(16)}", "")
        probe.unlink()
    except OSError as exc:
        raise UsageError("--output-dir", f"{output_dir}: cannot write there ({exc.strerror})") from exc
    if update_readme is not None:
        try:
            text = update_readme.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError("--update-readme", f"{update_readme}: cannot read it "
                                                f"({exc.strerror})") from exc
        inject_dashboard(text, "# results\n", str(update_readme))  # raises without its markers


def check_reporter_sees(app, folder: Path, option: str, queue: str,
                        timeout: float = REPORTER_ANSWER_SECONDS) -> None:
    """The reporter on `queue` can read submit's probe in `folder` and write there, else exit 2
    (or 3 when no reporter answers at all)."""
    token = secrets.token_hex(16)
    probe = atomic_write(folder / f"{PROBE_PREFIX}{token}", token)
    try:
        result = app.send_task(REPORTER_SEES, args=(str(folder), token), queue=queue)
        try:
            sees = result.get(timeout=timeout)
        except celery.exceptions.TimeoutError as exc:
            raise InfrastructureError(f"no reporter answered on queue {queue} within "
                                      f"{timeout:.0f} s: a detached pass needs one running") from exc
        finally:
            result.forget()
    finally:
        probe.unlink(missing_ok=True)
    if not sees:
        raise UsageError(option, f"{folder}: the reporter cannot see or write this folder, and "
                                 "with --detach it writes the outputs itself; give a folder it "
                                 "mounts (with `cluster up`: inside the checkout or the cache), "
                                 "or drop --detach (submit then writes them here)")
