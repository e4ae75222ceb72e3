"""Two worker hosts on one engine whose relay images differ (two checkouts): each gets a service
set of its own, side by side, and neither replaces the other's Redis or relay, mid-test or after.

Real engine, real relay (the built one, and a copy of it under another image ID), real go-libp2p
hole punches through each set at once.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster.cache import Cache
from cluster.labels import SERVICES
from cluster.network import DEFAULT_PUBLIC_SUBNET
from tests.e2e.clients.harness import REPO, Session, image_yaml_id, present_image, run_pair
from worker import hosts
from worker.host import Host
from worker.subnets import DEFAULT_POOL


def _image(client, folder: str) -> str:
    image_id = present_image(client, image_yaml_id(REPO / folder))
    if not image_id:
        pytest.skip(f"{folder} is not built")
    return image_id


def set_containers(client, key: str) -> dict[str, tuple[str, str]]:
    return {c.name: (c.id, c.status) for c in client.containers.list(
        all=True, filters={"label": f"{SERVICES}={key}"})}


def test_two_relay_images_get_two_sets_and_neither_replaces_the_other(docker_client, built,
                                                                        tmp_path) -> None:
    client = docker_client
    base, relay, router = (_image(client, f) for f in ("impl/base", "rust-relay", "router"))
    go = built("go")
    # Another checkout's relay: the same program under another image ID.
    copy, _ = client.images.build(fileobj=io.BytesIO(
        f"FROM sha256:{relay}\nLABEL holepunch.e2e=relay-copy\n".encode()), rm=True,
        labels={"holepunch.owner": "tests"}, tag="holepunch-e2e-relay-copy")
    copy_id = copy.id.removeprefix("sha256:")
    assert copy_id != relay
    a, b = (Host(name=f"e2e-set-{n}", cache=Cache(tmp_path / n), public_subnet=DEFAULT_PUBLIC_SUBNET,
                 lan_pool=DEFAULT_POOL, image_source=None) for n in "ab")
    for host in (a, b):
        hosts.register(host.name)
    try:
        first = a.services.ensure(base, relay)
        before = set_containers(client, first.key)
        second = b.services.ensure(base, copy_id)
        assert first.key != second.key
        assert {first.redis_ip, first.relay_ip}.isdisjoint({second.redis_ip, second.relay_ip})
        assert set_containers(client, first.key) == before, "the second set replaced the first"
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda s: run_pair(Session(s[0], s[1], router), go.image_id,
                                                    go.image_id, "tcp"),
                                 ((a, first), (b, second))))
        for run in runs:
            print(f"\n[sets] {run.summary()}")
            assert run.passed, run.log[-3000:]
        assert set_containers(client, first.key) == before
        hosts.unregister(b.name)
        assert a.name in b.services.stop()  # a is alive: every set stays
        assert set_containers(client, first.key) == before
        assert set_containers(client, second.key)
    finally:
        for host in (a, b):
            hosts.unregister(host.name)
        others = hosts.live_hosts()  # e.g. this test session's own host, sharing the first set
        a.services.stop()
        client.images.remove("holepunch-e2e-relay-copy", force=True)
    if not others:  # the last live host removes every set; while another lives, none goes
        assert not set_containers(client, first.key) and not set_containers(client, second.key)
    else:
        assert set_containers(client, first.key), f"a live host ({sorted(others)}) lost its set"
