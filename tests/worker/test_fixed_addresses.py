"""Redis and the relay sit at fixed addresses, below the range the engine hands out."""

import ipaddress

import pytest

from worker.services import fixed_addresses


def test_redis_and_relay_follow_the_gateway_and_stay_out_of_the_dynamic_range() -> None:
    redis_ip, relay_ip, dynamic = fixed_addresses("11.11.0.0/16")
    assert (redis_ip, relay_ip, dynamic) == ("11.11.0.2", "11.11.0.3", "11.11.128.0/17")
    for fixed in (redis_ip, relay_ip):
        assert ipaddress.IPv4Address(fixed) not in ipaddress.IPv4Network(dynamic)


def test_a_subnet_too_small_for_both_is_refused() -> None:
    assert fixed_addresses("11.11.0.0/28")[2] == "11.11.0.8/29"
    with pytest.raises(ValueError, match="too small"):
        fixed_addresses("11.11.0.0/29")
