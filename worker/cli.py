"""`holepunch-worker`: a Celery worker that runs hole-punch tests on this Docker host."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import click

from cluster.cache import Cache, default_cache_root
from cluster.celeryconfig import BROKER_ENV, DEFAULT_TEST_TIMEOUT, TEST_QUEUE
from cluster.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, HolepunchError
from cluster.imageid import bare_image_id
from cluster.network import DEFAULT_PUBLIC_SUBNET
from cluster.options import broker_value, visibility_option
from worker import hosts
from worker.host import Host
from worker.lanpool import reap_lans
from worker.reaper import reap_abandoned, reap_tests
from worker.services import fixed_addresses
from worker.subnets import DEFAULT_POOL

log = logging.getLogger("holepunch.worker")
# LAN pool pairs each task process makes at its start: its test's, and the one its previous
# test's teardown still holds in the background (worker.teardown).
WARM_PAIRS = 2
_cache_root: Path | None = None  # known once the options are parsed: crash logs go there


def default_concurrency() -> int:
    """Tests at once on this host: measured here, 4 at once took 15.5 s against 42.7 s one after
    another, so two per core keeps the cores busy while containers start and wait."""
    return max(2, 2 * (os.cpu_count() or 1))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--broker", envvar=BROKER_ENV, callback=broker_value, default=None,
              help="Broker URL, e.g. redis://:PASSWORD@10.0.0.5:6379/0, or a file holding it "
                   "(keeps the password out of `ps`) ($HOLEPUNCH_BROKER).")
@click.option("-c", "--concurrency", type=click.IntRange(1), default=None,
              help="Tests run at once on this host. Default: two per core.")
@click.option("-n", "--hostname", "host_name", default=None,
              help="This host's name in records and Flower. Default: the machine's hostname.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local cache (compose files). Default: $HOLEPUNCH_CACHE, else ~/.cache/holepunch.")
@click.option("--image-source", default=None,
              help="Where images/<id>.tar.zst are fetched from when this engine lacks one: a "
                   "directory or the cache server's URL. Default: the cache directory.")
@click.option("--public-subnet", default=DEFAULT_PUBLIC_SUBNET, show_default=True,
              help="Subnet of the simulated internet (an internal Docker network).")
@click.option("--lan-pool", default=DEFAULT_POOL, show_default=True,
              help="Pool the per-test LAN /24 pairs are leased from.")
@click.option("--warm-routers/--no-warm-routers", default=True, show_default=True,
              help="Start each test's NAT routers and namespace holders before it, while the "
                   "test before it runs, and hand them its settings when it starts "
                   "(worker/warmrouters.py); off: every test starts its own.")
@click.option("--max-test-timeout", type=click.IntRange(1), default=DEFAULT_TEST_TIMEOUT,
              show_default=True, help="Longest per-test timeout any pass will use (seconds); sets "
                                      "the broker's visibility timeout above it.")
@visibility_option
@click.option("-Q", "--queues", default=TEST_QUEUE, show_default=True,
              help="Comma-separated queues to consume (add a host-pinned queue here).")
@click.option("--without-mingle", is_flag=True,
              help="Skip Celery's start-up sync with other workers (a second): for a worker that "
                   "is alone on its broker, as the embedded default's is.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--start-services", metavar="BASE_ID,RELAY_ID|-", default=None,
              help="Do not start: start this host's global services (network, Redis, relay) from "
                   "these images, then exit. With '-': make the network now and read "
                   "BASE_ID,RELAY_ID from standard input (nothing more is started at end of "
                   "input). The embedded default runs it while its worker boots, so the first "
                   "test does not wait for them.")
@click.option("--cleanup", is_flag=True,
              help="Do not start: remove this host's test leftovers and LAN networks (and a "
                   "dead process's) and the global services (Redis, relay, network, host guard) "
                   "unless another live host on this engine uses them, then exit.")
def cli(broker: str | None, concurrency: int | None, host_name: str | None,
         cache_dir: Path | None, image_source: str | None, public_subnet: str, lan_pool: str,
         warm_routers: bool, max_test_timeout: int, visibility: int | None, queues: str, without_mingle: bool,
         loglevel: str, start_services: str | None, cleanup: bool) -> None:
    """Run a Celery worker that takes tests from the broker and runs them on this host's Docker
    engine, with one Redis and one relay of its own on an internal network.

    On start it removes test containers and networks a crashed run of this host left behind,
    and those of any host on this engine whose worker process is dead; on shutdown it removes
    its LAN networks (kept across tests) and stops the global services (Redis, relay, network),
    unless another live host on the engine uses them.

    Exit codes: 0 stopped, 2 bad input, 3 infrastructure (no engine, no broker), 4 internal
    error (a bug: the traceback is written under <cache>/logs/), 130 interrupted.
    """
    global _cache_root
    _cache_root = default_cache_root(cache_dir)
    try:
        fixed_addresses(public_subnet)  # Redis and the relay need room below the engine's range
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--public-subnet") from exc
    host = Host(name=host_name or socket.gethostname(), cache=Cache(default_cache_root(cache_dir)),
                public_subnet=public_subnet, lan_pool=lan_pool, warm_routers=warm_routers,
                image_source=image_source or str(default_cache_root(cache_dir)))
    host.export()
    if start_services:
        _start_services(host, start_services)  # without importing Celery: it runs at boot
        return
    from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

    from cluster.app import configure, run_worker
    configure(broker, max_test_timeout, visibility)
    import worker.tasks  # noqa: F401 - registers run_test with the app

    try:
        # This host's own leftovers, and any host's whose worker process is dead (a SIGKILLed
        # embedded submit); never the tests of another live host sharing this engine.
        removed = reap_tests(host.services.client, host.name)
        removed += reap_lans(host.services.client, host.name)  # a crashed run's pool networks
        removed += reap_abandoned(host.services.client)
    except HolepunchError as exc:
        click.echo(f"holepunch-worker: {exc}", err=True)
        sys.exit(exc.exit_code)
    host.leases.reclaim_stale()
    if removed:
        click.echo(f"holepunch-worker: removed leftovers: {', '.join(removed)}", err=True)
    if cleanup:
        hosts.unregister(host.name)
        try:
            users = host.services.stop()
        except HolepunchError as exc:
            click.echo(f"holepunch-worker: {exc}", err=True)
            sys.exit(exc.exit_code)
        if users:
            click.echo(f"holepunch-worker: global services left running: tests of "
                       f"{', '.join(users)} use them", err=True)
        return

    @worker_process_init.connect(weak=False)
    def _end_with_worker(**_: object) -> None:
        # A task process whose worker is gone (SIGKILL) could deliver nothing: it ends too,
        # and its test's containers are reaped (by the watchdog, or the next start).
        from cluster.lifetime import die_with_parent
        die_with_parent(parent=int(os.environ.get(hosts.PID_ENV) or os.getppid()))

    @worker_process_init.connect(weak=False)
    def _warm_lan_pool(**_: object) -> None:
        # Each task process makes the LAN networks of two leases ahead of its first tests
        # (worker.lanpool), then its first test's routers (worker.warmrouters): off their
        # path, while the process waits for work.
        import threading

        from worker.tasks import this_host
        task_host = this_host()
        from worker.warmrouters import PROCESS as WARM_ROUTERS

        def warm() -> None:
            task_host.lans.warm(task_host.leases, WARM_PAIRS)
            if task_host.warm_routers:
                WARM_ROUTERS.prewarm(task_host)  # and the first test's routers (worker.warmrouters)
        threading.Thread(target=warm, daemon=True, name="warm the LAN pool").start()

    @worker_process_shutdown.connect(weak=False)
    def _finish_teardown(**_: object) -> None:
        # The task process's last test may still be torn down in the background (worker.teardown):
        # its containers go before the process does, so the global services can go after it.
        from worker.runner import termination_deferred
        from worker.tasks import this_host
        from worker.teardown import PROCESS
        from worker.warmrouters import PROCESS as WARM_ROUTERS
        with termination_deferred():
            try:
                WARM_ROUTERS.close(this_host().services.client)  # the next test's routers
            finally:
                PROCESS.join()

    @worker_shutdown.connect(weak=False)
    def _stop_services(**_: object) -> None:
        hosts.unregister(host.name)
        from docker.errors import DockerException

        from worker.warmrouters import reap_warm
        try:
            reap_warm(host.services.client, host.name)  # a killed task process's cell
        except DockerException as exc:
            log.warning("removing the routers in standby: %s", exc)
        try:
            users = host.services.stop()
        except HolepunchError as exc:
            log.warning("stopping global services: %s", exc)
            return
        if users:
            log.warning("global services left running: tests of %s use them", ", ".join(users))

    hosts.register(host.name)
    sys.exit(run_worker(queues=queues.split(","), concurrency=concurrency or default_concurrency(),
                        hostname=f"holepunch@{host.name}", loglevel=loglevel,
                        without_mingle=without_mingle))


def _start_services(host: Host, images: str) -> None:
    try:
        if images == "-":
            host.services.prepare_network()  # while the caller still resolves the images
            images = sys.stdin.readline().strip()
            if not images:
                return
        base, _, relay = images.partition(",")
        if not base or not relay:
            raise click.BadParameter("expected BASE_ID,RELAY_ID", param_hint="--start-services")
        services = host.services.ensure(bare_image_id(base), bare_image_id(relay))
    except HolepunchError as exc:
        click.echo(f"holepunch-worker: {exc}", err=True)
        sys.exit(exc.exit_code)
    click.echo(f"holepunch-worker: global services up: Redis {services.redis_addr}, relay "
               f"{services.relay_ip}")


def main(argv: list[str] | None = None) -> None:
    """The entry point: anything unexpected is one line, a log file and EXIT_INTERNAL."""
    try:
        code = cli.main(args=argv, prog_name="holepunch-worker", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("holepunch-worker: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except HolepunchError as exc:
        click.echo(f"holepunch-worker: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        from cluster.crash import crash_line, write_crash_log
        log = write_crash_log("holepunch-worker", exc, _cache_root)
        click.echo(crash_line("holepunch-worker", exc, log), err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
