"""This worker host's settings, passed from the CLI to the task processes by environment."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cached_property

from cluster.cache import Cache, default_cache_root
from cluster.network import DEFAULT_PUBLIC_SUBNET
from worker.hosts import PID_ENV
from worker.lanpool import LanPool
from worker.services import GlobalServices
from worker.subnets import DEFAULT_POOL, SubnetLeases

ENV = {
    "host": "HOLEPUNCH_HOST",
    "public_subnet": "HOLEPUNCH_PUBLIC_SUBNET",
    "lan_pool": "HOLEPUNCH_LAN_POOL",
    "image_source": "HOLEPUNCH_IMAGE_SOURCE",
    "warm_routers": "HOLEPUNCH_WARM_ROUTERS",
}


@dataclass(frozen=True)
class Host:
    name: str
    cache: Cache
    public_subnet: str
    lan_pool: str
    image_source: str | None
    warm_routers: bool = True    # start the next test's routers before it (worker.warmrouters)

    @classmethod
    def from_environment(cls) -> Host:
        cache = Cache(default_cache_root())
        return cls(
            name=os.environ.get(ENV["host"]) or socket.gethostname(),
            cache=cache,
            public_subnet=os.environ.get(ENV["public_subnet"]) or DEFAULT_PUBLIC_SUBNET,
            lan_pool=os.environ.get(ENV["lan_pool"]) or DEFAULT_POOL,
            image_source=os.environ.get(ENV["image_source"]) or str(cache.root),
            warm_routers=os.environ.get(ENV["warm_routers"], "1") != "0")

    def export(self) -> None:
        """Put these settings where forked task processes find them."""
        os.environ[ENV["host"]] = self.name
        os.environ[ENV["public_subnet"]] = self.public_subnet
        os.environ[ENV["lan_pool"]] = self.lan_pool
        os.environ[ENV["warm_routers"]] = "1" if self.warm_routers else "0"
        os.environ["HOLEPUNCH_CACHE"] = str(self.cache.root)
        os.environ[PID_ENV] = str(os.getpid())  # the task processes' containers name this one
        if self.image_source:
            os.environ[ENV["image_source"]] = self.image_source

    @cached_property
    def services(self) -> GlobalServices:
        return GlobalServices(self.name, self.public_subnet, self.lan_pool)

    @cached_property
    def leases(self) -> SubnetLeases:
        return SubnetLeases(self.lan_pool)

    @cached_property
    def lans(self) -> LanPool:
        """This host's LAN networks, kept across tests (worker.lanpool)."""
        return LanPool(self.name, lambda: self.services.client)
