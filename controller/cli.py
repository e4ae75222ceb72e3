"""`holepunch-controller`: select tests, run passes and report on them.

Each command imports what it uses when it runs: `submit` on the embedded default starts its
local Redis and worker before the rest of the controller (Celery, pydantic, ...) is imported,
so the worker boots while the controller is still loading.
"""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path

import click
from rich.console import Console

from cluster.cache import Cache, atomic_write, default_cache_root, short
from cluster.celeryconfig import CONTROLLER_QUEUE, DEAD_AFTER_SECONDS, DEFAULT_KNOWN_FAILURE_TIMEOUT
from cluster.errors import (
    EXIT_INFRASTRUCTURE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    HolepunchError,
    UsageError,
)
from cluster.evidence import CaptureMode
from cluster.options import broker_value, visibility_option

err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
_cache_root: Path | None = None  # known once the group's options are parsed: crash logs go there

KIND_HELP = ("full (root test-selection.yaml), a language with an impl/<lang>/ folder "
             "(impl/<lang>/test-selection.yaml), or auto (picked from git diff).")
FILTER_HELP = ("Pipe-separated substrings; a test runs when its name contains any of them. "
               "Overrides the YAML test-filter; '' selects everything.")
NAT_HELP = ("NAT presets to multiply the tests over: a comma-separated LIST for both sides, or "
            "'DIALERS x LISTENERS' (each a list or 'all'), e.g. 'all x full-cone,symmetric'. "
            "Presets: full-cone, restricted-cone, port-restricted-cone (the default), symmetric, "
            "cgnat (router/README.md). Overrides the YAML nat / dialer-nat / listener-nat.")
RELAY_HELP = ("Relays to multiply the tests over, comma-separated: rust (the default; rust-relay/) "
              "and go (go-relay/); a test through go is named '... [relay go]'. Overrides the "
              "YAML relays.")
IGNORE_HELP = ("Pipe-separated substrings; a test whose name contains any is dropped (applied "
               "after the filter). Overrides the YAML test-ignore; '' ignores nothing.")


def selection_options(command):
    """The options that choose a pass's tests, shared by `matrix` and `submit`."""
    for option in reversed([
        click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                     show_default=True, help="Repository root holding impls.yaml."),
        click.option("--kind", default="full", show_default=True, help=KIND_HELP),
        click.option("--base", default="HEAD~1", show_default=True,
                     help="With --kind auto: the git revision to diff against."),
        click.option("--test-filter", default=None, help=FILTER_HELP),
        click.option("--test-ignore", default=None, help=IGNORE_HELP),
        click.option("--nat", default=None, help=NAT_HELP),
        click.option("--relay", default=None, help=RELAY_HELP),
    ]):
        command = option(command)
    return command


def build_options(command):
    """How images are built, shared by `build` and `submit`."""
    for option in reversed([
        click.option("--build-jobs", type=click.IntRange(1), default=None,
                     help="Images built at once once the base is built (all but the base are "
                          "independent). Default: one per core, at most 4."),
        click.option("--build-output", type=click.Choice(["log", "terminal"]), default="log",
                     show_default=True,
                     help="Where make's, the compilers' and package managers' output goes: a log "
                          "per image, <cache>/logs/build/<image>.log (its last lines are shown "
                          "when a build fails), or the terminal as it comes."),
    ]):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache root. Default: $HOLEPUNCH_CACHE, else ~/.cache/holepunch.")
@click.pass_context
def cli(ctx: click.Context, cache_dir: Path | None) -> None:
    """Distributed libp2p hole-punch interoperability tests.

    Exit codes: 0 all passed, 1 a test failed, 2 bad input, 3 infrastructure (a test that could
    not be run included), 4 internal error (a bug: the traceback is written under
    <cache>/logs/), 130 interrupted.
    """
    global _cache_root
    _cache_root = default_cache_root(cache_dir)
    ctx.obj = Cache(_cache_root)


@cli.command("check-deps")
@click.option("--broker", envvar="HOLEPUNCH_BROKER", callback=broker_value, default=None,
              help="Broker URL to check instead of a local redis-server ($HOLEPUNCH_BROKER).")
def check_deps(broker: str | None) -> None:
    """Check the tools a pass needs and say how to install what is missing (exit 3 if any)."""
    from rich.table import Table
    from rich.text import Text

    from controller.deps import run_checks
    table = Table("dependency", "status", "detail / how to install")
    missing = 0
    for check in run_checks(broker):
        status = Text("ok", style="green") if check.ok else Text("missing", style="red")
        detail = check.detail if check.ok else f"{check.detail}: {check.fix}"
        table.add_row(Text(check.name), status, Text(detail))
        missing += (not check.ok) and check.required
    err.print(table)
    if missing:
        err.print(f"{missing} required dependencies missing", style="red")
        raise click.exceptions.Exit(EXIT_INFRASTRUCTURE)
    err.print("all dependencies present")


@cli.command("matrix")
@selection_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("test-matrix.yaml"), show_default=True,
              help="Where to write the matrix (also cached by its inputs' hash); - prints the "
                   "YAML instead of the test names.")
@click.pass_obj
def matrix(cache: Cache, root: Path, kind: str, base: str, test_filter: str | None,
           test_ignore: str | None, nat: str | None, relay: str | None, output: Path) -> None:
    """Print the selected tests and write test-matrix.yaml."""
    from cluster.matrix import matrix_to_yaml
    from controller.plan.config import detect_kind
    from controller.plan.matrix import plan_matrix
    if kind == "auto":
        choice = detect_kind(root, base)
        err.print(f"--kind auto: {choice.kind} ({choice.reason})")
        kind = choice.kind
    plan = plan_matrix(root, kind, test_filter, test_ignore, cache, nat, relay)
    text = matrix_to_yaml(plan.matrix)
    if str(output) == "-":
        click.echo(text, nl=False)
    else:
        write_output(output, text, "--output")
        for test in plan.matrix.tests:
            click.echo(test.name)
    meta = plan.matrix.metadata
    origin = "cached" if plan.from_cache else "generated"
    err.print(f"{meta.total_tests} tests (kind {meta.kind}; filter {list(meta.filter)}; "
              f"ignore {list(meta.ignore)}; {meta.ignored_tests} ignored; "
              f"{sum(t.expected_failure for t in plan.matrix.tests)} known failures) -> "
              f"{'standard output' if str(output) == '-' else output} "
              f"({origin} as test-matrix/{short(plan.cache_key)}….yaml)")


@cli.command("build")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Repository root holding impls.yaml.")
@click.option("--relay", default="rust", show_default=True,
              help="The relays to build, comma-separated: rust (rust-relay/), go (go-relay/).")
@build_options
@click.argument("ids", nargs=-1)
@click.pass_obj
def build(cache: Cache, root: Path, relay: str, build_jobs: int | None, build_output: str,
          ids: tuple[str, ...]) -> None:
    """Build the base image, NAT router, relays and the given implementations (default: all).

    An image whose image.yaml names the current source snapshot and that the engine still has
    is not rebuilt. Dependencies are fetched once (make vendor) into the cache's snapshots/;
    every later build, and any build with the network cut, runs from the snapshot. One line per
    image shows each build; make's output goes to <cache>/logs/build/<image>.log (its last
    lines are shown when a build fails).
    """
    from cluster.selection import parse_relays
    from controller.images.resolve import resolve_images
    from controller.plan.config import load_impls
    relays = parse_relays(relay)
    impls = load_impls(root)
    chosen = list(ids or [impl.id for impl in impls.implementations])
    resolve_images(root, cache, impls, chosen, err, jobs=build_jobs, output=build_output,
                   relays=relays)


@cli.command("submit")
@selection_options
@click.option("--broker", envvar="HOLEPUNCH_BROKER", callback=broker_value, default=None,
              help="Submit to a running cluster: its broker URL (redis://:PASSWORD@host:port/0) or a "
                   "file holding it, as `cluster up` writes it ($HOLEPUNCH_BROKER). Without "
                   "it: the embedded default (local Redis, local worker, local Docker engine).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="Where results.yaml, results.md, output.log and logs/ are written.")
@click.option("--timeout", type=click.IntRange(1), default=120, show_default=True,
              help="Per-test timeout in seconds: on expiry the test is killed and fails (timeout).")
@click.option("--known-failure-timeout", type=click.IntRange(1),
              default=DEFAULT_KNOWN_FAILURE_TIMEOUT, show_default=True,
              help="Per-test timeout in seconds of a test expected to fail (known-failures), if "
                   "shorter than --timeout. Known failures run after the other tests.")
@click.option("--retries", type=click.IntRange(0), default=0, show_default=True,
              help="Re-run a failing test up to N times on any host; fail-then-pass is 'flaky'.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Embedded default: tests at once on this machine (default: two per core).")
@click.option("--capture", type=click.Choice([m.value for m in CaptureMode]),
              default=CaptureMode.FAILURES.value, show_default=True,
              help="Which tests keep their evidence (each router's capture of its public side "
                   "and the clients' TLS/QUIC key logs, under captures/): failed (known failures "
                   "too), flaky (its last failed attempt's too, as captures/<test>.attempt-<n>.*) "
                   "and unexpectedly passing tests; all; or none (nothing is captured).")
@click.option("--update-readme", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Inject the results into this README between the INTEROP_DASHBOARD markers.")
@click.option("--detach", is_flag=True,
              help="With --broker: return the pass id at once; follow with `status`.")
@click.option("--image-source", default=None,
              help="With --broker: where workers fetch images/<id>.tar.zst (the cache server's URL). "
                   "Default: each worker's own setting.")
@click.option("--deadline", type=click.IntRange(1), default=None,
              help="Seconds after which an unfinished pass stops and is written as partial. "
                   "Default: enough for every test to reach its timeout.")
@build_options
@click.pass_obj
def submit_command(cache: Cache, root: Path, kind: str, base: str, test_filter: str | None,
                   test_ignore: str | None, nat: str | None, relay: str | None,
                   broker: str | None, output_dir: Path, timeout: int,
                   known_failure_timeout: int, retries: int, workers: int | None,
                   update_readme: Path | None, detach: bool, image_source: str | None,
                   deadline: int | None, capture: str, build_jobs: int | None,
                   build_output: str) -> None:
    """Run a whole test pass and write results.yaml, results.md and the test-pass zip.

    Builds (or reuses) the images the selected tests need, enqueues one run_test task per test
    as a Celery chord, shows progress, and exits 0 if every test passed, 1 if one failed or the
    pass is partial, 2 on bad input, 3 on an infrastructure fault (also when a test ended as
    `error`: it could not be run even after its retries), 4 on an internal error, 130 when
    interrupted.
    """
    # The standard library only: the embedded cluster starts at once, before the heavy imports.
    from controller.run.where import start_cluster, where_pass_runs
    where = where_pass_runs(broker, detach, workers, timeout)
    with start_cluster(where, cache.root) as cluster:
        from controller.run.pass_plan import SubmitOptions
        from controller.run.submit import submit
        options = SubmitOptions(root=root, kind=kind, base=base, test_filter=test_filter,
                                test_ignore=test_ignore, nat=nat, relay=relay, broker=broker,
                                output_dir=output_dir,
                                timeout=timeout, known_failure_timeout=known_failure_timeout,
                                retries=retries, workers=workers,
                                update_readme=update_readme, detach=detach,
                                image_source=image_source, deadline=deadline,
                                capture=CaptureMode(capture),
                                build_jobs=build_jobs, build_output=build_output)
        code = submit(options, where, cluster, cache, err)
    raise click.exceptions.Exit(code)


@cli.command("rerun")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Tests at once on this machine (default: two per core).")
@click.option("--timeout", type=click.IntRange(1), default=120, show_default=True)
@click.pass_obj
def rerun_command(cache: Cache, folder: Path, workers: int | None, timeout: int) -> None:
    """Re-run an unzipped test pass (what its re-run.sh calls): rebuild every image from the
    bundled snapshots with no network, run the same tests on the embedded default, and write the
    new results under FOLDER/rerun-<time>/."""
    from datetime import datetime

    from controller.run.pass_plan import SubmitOptions
    from controller.run.rerun import rerun
    output = folder / f"rerun-{datetime.now():%H%M%S-%d-%m-%Y}"
    options = SubmitOptions(root=folder, output_dir=output, timeout=timeout, workers=workers)
    raise click.exceptions.Exit(rerun(folder.resolve(), options, cache, err))


@cli.command("status")
@click.argument("pass_name")
@click.option("--broker", envvar="HOLEPUNCH_BROKER", callback=broker_value, required=True,
              help="The cluster's broker: a URL or a file holding it ($HOLEPUNCH_BROKER).")
def status(pass_name: str, broker: str) -> None:
    """Show the progress of a pass submitted with --detach."""
    from controller.run.status import show_status
    raise click.exceptions.Exit(show_status(pass_name, broker, err))


@cli.command("reporter")
@click.option("--broker", envvar="HOLEPUNCH_BROKER", callback=broker_value, required=True,
              help="The cluster's broker: a URL or a file holding it ($HOLEPUNCH_BROKER).")
@click.option("--queue", default=CONTROLLER_QUEUE, show_default=True,
              help="The controller queue the chords' aggregate tasks are routed to.")
@click.option("--max-test-timeout", type=click.IntRange(1), default=120, show_default=True)
@visibility_option
@click.option("-n", "--name", default=None, help="Node name in Flower. Default: reporter@<hostname>.")
@click.option("--without-mingle", is_flag=True,
              help="Skip Celery's start-up sync with other workers (a second): for a reporter "
                   "alone on its broker, as the embedded default's is.")
@click.option("--host-watch/--no-host-watch", default=True, show_default=True,
              help="Watch the worker hosts' heartbeats and put a lost host's tests (silent for "
                   f"{DEAD_AFTER_SECONDS:.0f} s: killed, paused, cut off) back on the queue at "
                   "once, instead of after the visibility timeout.")
@click.pass_obj
def reporter(cache: Cache, broker: str, queue: str, max_test_timeout: int,
             visibility: int | None, name: str | None, without_mingle: bool,
             host_watch: bool) -> None:
    """Run the controller-side reporter: a Celery worker that finishes passes (aggregate).

    An attached `submit` gets the outputs back and writes them itself; a detached pass's are
    written here, into the folder its registry names. Test-pass zips go into this reporter's
    own cache (--cache-dir), whatever a message says. Its host watch puts a lost worker
    host's tests back on the queue within seconds (cluster/failover.py).

    It also finishes a pass whose every test has a stored result but whose callback never ran
    or failed (a lost message), from the stored results, within about 15 s.
    """
    from cluster.app import configure, run_worker
    app = configure(broker, max_test_timeout, visibility)
    from controller.results.tasks import use_cache  # registers aggregate
    use_cache(cache)
    from controller.results.recover import LostCallbacks
    LostCallbacks(app, cache).start()  # passes whose callback was lost: finished from results
    if host_watch:
        from controller.run.hostwatch import HostWatcher
        HostWatcher(app).start()
    raise click.exceptions.Exit(run_worker(
        queues=[queue], concurrency=1, pool="solo", without_mingle=without_mingle,
        hostname=name or f"reporter@{socket.gethostname()}"))


@cli.group("cluster")
def cluster_group() -> None:
    """The whole cluster of compose.cluster.yml on this machine: broker, Flower, cache server,
    reporter and two Docker-in-Docker worker hosts (worker-a, worker-b)."""


WORKER_HOSTS = ("worker-a", "worker-b")


@cluster_group.command("up")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Repository root holding compose.cluster.yml.")
@click.option("--broker-port", type=click.IntRange(1, 65535), default=16379, show_default=True,
              help="Broker port on 127.0.0.1.")
@click.option("--flower-port", type=click.IntRange(1, 65535), default=5555, show_default=True,
              help="Flower port on 127.0.0.1.")
@click.option("--cache-port", type=click.IntRange(1, 65535), default=18080, show_default=True,
              help="Cache server port on 127.0.0.1.")
@click.option("--flower-auth", default=None, metavar="USER:PASSWORD",
              help="Flower's basic auth (shown by `ps` while this runs; prefer the default). "
                   "Default: holepunch and a password generated once, kept in the secrets "
                   "folder's flower-auth.")
@click.option("-c", "--concurrency", type=click.IntRange(1), default=2, show_default=True,
              help="Tests at once on each worker host.")
@click.option("--max-test-timeout", type=click.IntRange(1), default=120, show_default=True,
              help="Longest per-test timeout the cluster will be given (seconds).")
@visibility_option
@click.option("--wait", "wait_seconds", type=click.IntRange(1), default=300, show_default=True,
              help="Seconds to wait for the workers and the reporter to answer.")
@click.pass_obj
def cluster_up(cache: Cache, root: Path, broker_port: int, flower_port: int, cache_port: int,
               flower_auth: str | None, concurrency: int, max_test_timeout: int,
               visibility: int | None, wait_seconds: int) -> None:
    """Build the cluster image and start every service; return once all workers answer.

    The broker's password and Flower's credentials are generated once into the secrets folder
    ($HOLEPUNCH_CLUSTER_SECRETS, default ~/.config/holepunch/cluster; never inside the cache):
    submit with `--broker <secrets>/broker-url`.
    """
    from cluster.app import configure
    from controller.cluster_up import (
        BROKER_URL_FILE,
        FLOWER_AUTH_FILE,
        ClusterSettings,
        build_image,
        compose,
        make_secrets,
        save_settings,
        secrets_dir,
        wait_ready,
    )
    from controller.images.build import Builder
    root = root.resolve()
    if not (root / "compose.cluster.yml").is_file():
        raise UsageError("--root", f"{root} has no compose.cluster.yml (give the checkout)")
    secrets = secrets_dir()
    make_secrets(secrets, cache, broker_port, flower_auth)
    cache.folder("images")  # the cache server publishes this folder only
    base = Builder(cache, log=lambda line: err.print(line)).build_base(root / "impl" / "base")
    image = build_image(root, cache, base.image_id, log=err.print)
    settings = ClusterSettings(root=root, cache=cache.root.resolve(), image=image,
                               secrets=secrets.resolve(), broker_port=broker_port,
                               flower_port=flower_port, cache_port=cache_port,
                               worker_concurrency=concurrency, max_test_timeout=max_test_timeout,
                               visibility_timeout=visibility)
    save_settings(cache, settings)
    compose(settings, "up", "-d", "--remove-orphans")
    app = configure(settings.broker_url, max_test_timeout, visibility)
    wait_ready(app, {f"holepunch@{host}" for host in WORKER_HOSTS} | {"reporter@cluster"},
               wait_seconds, log=err.print)
    err.print(f"cluster up: broker redis://127.0.0.1:{broker_port}/0 (URL with its password in "
              f"{secrets / BROKER_URL_FILE}), Flower {settings.flower_url} (user:password in "
              f"{secrets / FLOWER_AUTH_FILE}), cache http://127.0.0.1:{cache_port} (images/ "
              f"only), workers {', '.join(WORKER_HOSTS)}\n"
              f"submit with: holepunch-controller submit --kind full --broker "
              f"{secrets / BROKER_URL_FILE}")


@cluster_group.command("down")
@click.pass_obj
def cluster_down(cache: Cache) -> None:
    """Stop the cluster: workers stop their tests and global services, then every container,
    network and volume of the cluster is removed (its worker hosts' images with them)."""
    from controller.cluster_up import compose, load_settings
    compose(load_settings(cache), "down", "-v", "--remove-orphans", "-t", "180")
    err.print("cluster down")


@cluster_group.command("compose", context_settings={"ignore_unknown_options": True})
@click.argument("compose_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def cluster_compose(cache: Cache, compose_args: tuple[str, ...]) -> None:
    """Any docker-compose command on the cluster (default ps), e.g. `cluster compose logs worker-a`."""
    from controller.cluster_up import compose, load_settings
    result = compose(load_settings(cache), *(compose_args or ("ps",)), check=False)
    raise click.exceptions.Exit(result.returncode)


@cli.command("nat-probe")
@click.argument("preset")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Repository root (its router/image.yaml names the router image).")
def nat_probe(preset: str, root: Path) -> None:
    """Prove a NAT preset without libp2p: probe a router of that preset on the local engine
    (RFC 5780-style, UDP and TCP) and print the observed mapping, filtering and port
    preservation as YAML. Presets: full-cone, restricted-cone, port-restricted-cone, symmetric,
    cgnat. Starts its own labelled networks and containers and removes them afterwards."""
    from cluster.nat import preset as nat_preset
    from controller.nat.probe import run_probe
    chosen = nat_preset(preset)
    click.echo(run_probe(chosen, root, log=err.print).yaml(), nl=False)


@cli.command("report")
@click.argument("results_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the markdown. Default: results.md beside RESULTS_FILE.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the page. Default: results.html beside the markdown.")
@click.option("--update-readme", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also inject the dashboard into this README between the "
                   "INTEROP_DASHBOARD markers (with a link to the page).")
def report(results_file: Path, output: Path | None, html_file: Path | None,
           update_readme: Path | None) -> None:
    """Regenerate results.md and results.html from a results.yaml.

    results.html is one self-contained file (no network; opens from file:// and inside a
    test-pass zip): the summary, a dialer x listener matrix per transport with results.md's
    marks, a test's details on a click (reason, host, timings, the tail of its log from the
    logs/ folder beside RESULTS_FILE, links to its files), filters by implementation, transport
    and status, and a timeline with one row per worker host. `?status=fail` (also `impl`,
    `transport`) in its URL sets the filters; `#test-N` opens the details of the Nth test.
    """
    import os

    from cluster.yamlio import read_text
    from controller.results.collect import load_results
    from controller.results.html import files_beside, link_from, render_results_html
    from controller.results.report import inject_dashboard, render_results_md
    results = load_results(results_file)
    markdown = render_results_md(results)
    target = output or results_file.with_name("results.md")
    page = html_file or target.with_name("results.html")
    logs, present = files_beside(results, results_file.parent)
    root = Path(os.path.relpath(results_file.parent.resolve(), page.parent.resolve())).as_posix()
    # The README is read and checked before anything is written: a bad one writes nothing.
    readme = (inject_dashboard(read_text(update_readme), markdown, str(update_readme),
                               link_from(update_readme, page)) if update_readme else None)
    write_output(target, markdown, "--output")
    write_output(page, render_results_html(results, logs, root="" if root == "." else root,
                                           linked=present), "--html")
    err.print(f"wrote {target}, {page}")
    if update_readme and readme is not None:
        write_output(update_readme, readme, "--update-readme")
        err.print(f"updated the dashboard in {update_readme}")


@cli.command("workflows")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Repository root holding impls.yaml.")
@click.option("--check", is_flag=True,
              help="Write nothing: exit 1 naming each workflow that differs from what impls.yaml "
                   "generates (what the test suite runs).")
def workflows(root: Path, check: bool) -> None:
    """Write .github/workflows/hole-punch-<lang>.yml for each language in impls.yaml, plus
    hole-punch-full.yml and hole-punch-cluster.yml: adding a language is one edit to impls.yaml."""
    from controller.ci.workflows import differences, render_workflows, stale_workflows
    from controller.plan.config import load_impls
    files = render_workflows(load_impls(root))
    if check:
        found = differences(root, files)
        for line in found:
            err.print(line)
        if found:
            err.print("run `holepunch-controller workflows` and commit the result")
            raise click.exceptions.Exit(1)
        err.print(f"{len(files)} generated files up to date")
        return
    for relative, text in files.items():
        path = root / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text)
            err.print(f"wrote {relative}")
    for relative in stale_workflows(root, files):
        (root / relative).unlink()
        err.print(f"removed {relative} (no such language in impls.yaml)")


def write_output(path: Path, text: str, option: str) -> None:
    """A file the user asked for; a folder we may not write is their input, not our bug (a
    full disk is the machine's: main() says so)."""
    try:
        atomic_write(path, text)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise UsageError(option, f"cannot write {path}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; our errors become a message and their exit code, never a traceback, and
    neither does anything unexpected: it is one line, a log file and EXIT_INTERNAL."""
    try:
        result = cli.main(args=argv, prog_name="holepunch-controller", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("aborted")
        return EXIT_INTERRUPTED
    except HolepunchError as exc:
        err.print(f"error: {exc}", style="red")
        return exc.exit_code
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            return _internal_error(exc)
        # A full disk is the machine's fault, not the input's: say where, never a traceback.
        where = f" writing {exc.filename}" if exc.filename else ""
        err.print(f"error: no space left on device{where}: free some where the cache is "
                  "(--cache-dir, else $HOLEPUNCH_CACHE, else ~/.cache/holepunch) and where the "
                  "engine keeps its images (docker system df)", style="red")
        return EXIT_INFRASTRUCTURE
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        return _internal_error(exc)
    return result if isinstance(result, int) else EXIT_OK


def _internal_error(exc: BaseException) -> int:
    from cluster.crash import crash_line, write_crash_log
    err.print(crash_line("holepunch-controller", exc,
                         write_crash_log("holepunch-controller", exc, _cache_root)), style="red")
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
