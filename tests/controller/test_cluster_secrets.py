"""`cluster up`'s secrets: outside the cache, readable by their owner only, never on a command
line, never served by the cache server (compose.cluster.yml is read as compose reads it)."""

from __future__ import annotations

import stat
from pathlib import Path

import click
import pytest
import yaml

from cluster.cache import Cache
from cluster.errors import UsageError
from cluster.options import broker_value, redacted
from controller.cluster_up import ClusterSettings, make_secrets, secrets_dir

REPO = Path(__file__).resolve().parents[2]


def test_secrets_are_private_files_outside_the_cache_and_kept(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    (cache.root / "cluster").mkdir(parents=True)
    (cache.root / "cluster" / "flower-auth").write_text("old:leaked\n")  # where they used to be
    folder = tmp_path / "config" / "holepunch" / "cluster"
    first = make_secrets(folder, cache, 16379, None)
    assert len(first.broker_password) >= 32 and first.flower_auth.startswith("holepunch:")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (folder / "redis.conf").read_text() == f"requirepass {first.broker_password}\n"
    assert (folder / "broker-url").read_text().strip() == \
        f"redis://:{first.broker_password}@127.0.0.1:16379/0"
    assert "@broker:6379/0" in (folder / "broker.env").read_text()
    assert "FLOWER_BASIC_AUTH" not in (folder / "broker.env").read_text()
    assert (folder / "flower.env").read_text() == f"FLOWER_BASIC_AUTH={first.flower_auth}\n"
    assert make_secrets(folder, cache, 16379, None) == first, "generated once, then kept"
    assert not (cache.root / "cluster" / "flower-auth").exists()
    secret_values = {first.broker_password, first.flower_auth.split(":", 1)[1]}
    assert not any(value in path.read_text(errors="ignore") for path in cache.root.rglob("*")
                   if path.is_file() for value in secret_values)


def test_the_secrets_folder_may_not_be_inside_the_cache(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    with pytest.raises(UsageError, match="inside the cache"):
        make_secrets(cache.root / "cluster", cache, 16379, None)
    with pytest.raises(UsageError, match="user:password"):
        make_secrets(tmp_path / "s", cache, 16379, "no-colon")


def test_the_default_secrets_folder(tmp_path: Path) -> None:
    assert secrets_dir({"HOLEPUNCH_CLUSTER_SECRETS": str(tmp_path)}) == tmp_path
    assert secrets_dir({"XDG_CONFIG_HOME": "/x"}) == Path("/x/holepunch/cluster")


def test_compose_puts_no_secret_on_a_command_line_and_serves_only_images(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "compose.cluster.yml").read_text())
    services = compose["services"]
    settings = ClusterSettings(root=REPO, cache=tmp_path, image="i", secrets=tmp_path / "s")
    assert not any("AUTH" in key or "PASS" in key for key in settings.environment())
    for name, service in services.items():
        command = " ".join(str(part) for part in service.get("command") or [])
        for word in ("requirepass", "basic-auth", "basic_auth", "FLOWER_AUTH", "@broker", "://:"):
            assert word not in command, (name, word)
        assert "environment" not in service or not any(
            "BROKER" in key for key in service["environment"]), name
    assert services["broker"]["command"][:2] == ["redis-server", "/etc/holepunch/redis.conf"]
    assert "--protected-mode" not in services["broker"]["command"]
    assert services["cache"]["volumes"] == ["${HOLEPUNCH_CACHE:?}/images:/cache/images:ro"]
    assert any("flower.env" in f for f in services["flower"]["env_file"])
    for name in ("reporter", "worker-a", "worker-b"):
        merged = {**compose["x-secrets"], **services[name]}
        assert not any("flower" in f for f in merged["env_file"]), name


def test_broker_is_a_url_or_a_file_holding_one(tmp_path: Path) -> None:
    url = "redis://:s3cret@127.0.0.1:16379/0"
    (tmp_path / "broker-url").write_text(url + "\n")
    assert broker_value(None, None, str(tmp_path / "broker-url")) == url
    assert broker_value(None, None, url) == url and broker_value(None, None, None) is None
    with pytest.raises(click.BadParameter, match="neither a broker URL"):
        broker_value(None, None, str(tmp_path / "missing"))
    assert redacted(url) == "redis://:***@127.0.0.1:16379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
