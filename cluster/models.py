"""Typed models of every YAML shape the seed defines, plus the few we add.

Input files (impls.yaml, test-selection.yaml) forbid unknown keys so that a typo is an error,
not a silently ignored setting. Generated files tolerate extra keys from newer versions.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, field_validator,
                      model_validator)
from pydantic.alias_generators import to_camel

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
GIT_SHA = re.compile(r"^[0-9a-f]{40}$")
IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")


class Transport(str, Enum):
    TCP = "tcp"
    QUIC = "quic"


class SecureChannel(str, Enum):
    NOISE = "noise"
    TLS = "tls"


class Muxer(str, Enum):
    YAMUX = "yamux"
    MPLEX = "mplex"


def _none_as_empty(value: object) -> object:
    """`test-ignore:` with nothing after it means an empty list, not an error."""
    return [] if value is None else value


Patterns = Annotated[list[StrictStr], BeforeValidator(_none_as_empty)]


def _timestamp_text(value: object) -> object:
    """YAML reads an unquoted `2025-11-08T12:34:56Z` as a datetime; we keep the seed's text."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


Timestamp = Annotated[str, BeforeValidator(_timestamp_text)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class YamlModel(BaseModel):
    """A generated file's shape: camelCase keys, extra keys from newer versions tolerated."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)


# ---------------------------------------------------------------- impls.yaml


class Source(_Input):
    type: Literal["local", "github"]
    path: StrictStr | None = Field(
        default=None, description="Folder with the Makefile; defaults to impl/<lang>/<version>.")
    repo: StrictStr | None = None
    commit: StrictStr | None = None
    dockerfile: StrictStr = "Dockerfile"

    @model_validator(mode="after")
    def _fields_for_type(self) -> Source:
        if self.type == "github":
            if not self.repo or "/" not in self.repo:
                raise ValueError("a github source needs repo: <owner>/<name>")
            if not self.commit or not GIT_SHA.match(self.commit):
                raise ValueError("a github source needs commit: the full 40-hex git commit sha")
        return self


class Implementation(_Input):
    id: StrictStr
    source: Source
    transports: list[Transport] = Field(min_length=1)
    secure_channels: Annotated[list[SecureChannel], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list, alias="secureChannels")
    muxers: Annotated[list[Muxer], BeforeValidator(_none_as_empty)] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not SAFE_ID.match(value):
            raise ValueError(
                f"id {value!r} must be letters, digits, '.', '_' or '-' (it becomes part of "
                "test names, image names and file names)")
        return value

    @property
    def lang(self) -> str:
        """The language folder: `rust-v0.53` -> `rust`."""
        return self.id.split("-", 1)[0]

    @property
    def folder(self) -> str:
        """Where its Makefile lives, relative to the repository root."""
        if self.source.path:
            return self.source.path
        lang, _, version = self.id.partition("-")
        return f"impl/{lang}/{version or lang}"


class ImplsFile(_Input):
    implementations: list[Implementation] = Field(min_length=1)
    test_aliases: dict[StrictStr, StrictStr | list[StrictStr]] = Field(
        default_factory=dict, alias="test-aliases")

    @field_validator("implementations")
    @classmethod
    def _unique_ids(cls, implementations: list[Implementation]) -> list[Implementation]:
        seen: set[str] = set()
        for impl in implementations:
            if impl.id in seen:
                raise ValueError(f"duplicate implementation id {impl.id!r}")
            seen.add(impl.id)
        return implementations

    def aliases(self) -> dict[str, list[str]]:
        """Every alias as a list of patterns (a string alias is pipe-separated)."""
        out: dict[str, list[str]] = {}
        for name, value in self.test_aliases.items():
            items = value.split("|") if isinstance(value, str) else value
            out[name] = [item.strip() for item in items if item.strip()]
        return out

    def by_id(self) -> dict[str, Implementation]:
        return {impl.id: impl for impl in self.implementations}


# ---------------------------------------------------------------- test-selection.yaml


class SelectionFile(_Input):
    test_filter: Patterns = Field(default_factory=list, alias="test-filter")
    test_ignore: Patterns = Field(default_factory=list, alias="test-ignore")
    known_failures: Patterns = Field(default_factory=list, alias="known-failures")


# ---------------------------------------------------------------- image.yaml


class ImageInfo(YamlModel):
    image_id: str = Field(alias="imageID")
    image_name: str
    built_at: Timestamp
    arch: str
    snapshot: str | None = None
    makefile: str | None = None

    @field_validator("image_id")
    @classmethod
    def _hex_id(cls, value: str) -> str:
        value = value.removeprefix("sha256:")
        if not IMAGE_ID.match(value):
            raise ValueError("imageID must be 64 hex characters (without 'sha256:')")
        return value


# ---------------------------------------------------------------- test-matrix.yaml


class TestCase(YamlModel):
    """One test: who dials, who listens, over what."""

    __test__ = False  # not a pytest class

    name: str
    dialer: str
    listener: str
    transport: Transport
    secure_channel: SecureChannel | None = None
    muxer: Muxer | None = None
    dialer_snapshot: str | None = None
    listener_snapshot: str | None = None
    expected_failure: bool = False

    @property
    def variant(self) -> str:
        """What the name's parentheses hold: `tcp` or `tcp, noise, yamux`."""
        return ", ".join(p.value for p in (self.transport, self.secure_channel, self.muxer) if p)


class MatrixMetadata(YamlModel):
    generated_at: Timestamp
    kind: str = "full"
    filter: list[str] = Field(default_factory=list)
    ignore: list[str] = Field(default_factory=list)
    known_failures: list[str] = Field(default_factory=list)
    total_tests: int
    ignored_tests: int = 0


class TestMatrix(YamlModel):
    __test__ = False

    metadata: MatrixMetadata
    tests: list[TestCase] = Field(default_factory=list)


# ---------------------------------------------------------------- results.yaml


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    FLAKY = "flaky"  # failed, then passed on a retry: never counted as a plain pass


class PeerRecord(YamlModel):
    version: str
    snapshot: str | None = None
    makefile: str | None = None
    image_id: str | None = Field(default=None, alias="imageID")


class TestRecord(YamlModel):
    """What one run of one test produced; the seed's results.yaml entry plus who ran it."""

    __test__ = False

    name: str
    status: Status
    exit_code: int | None = None
    rtt_ms: float | None = None
    duration: str | None = None
    docker_compose: str | None = None
    dialer: PeerRecord
    listener: PeerRecord
    log_file: str | None = None
    transport: str | None = None  # the variant, as in the name's parentheses
    host: str | None = None
    reason: str | None = None
    attempts: int = 1
    expected_failure: bool = False
    # When the worker began and ended its (last) run, UTC ISO with milliseconds: the timeline of
    # results.html. Absent in records from older workers.
    started_at: str | None = None
    finished_at: str | None = None


class ResultsMetadata(YamlModel):
    test_pass: str
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    duration: str | None = None
    kind: str | None = None
    platform: str | None = None
    os: str | None = None
    worker_count: int | None = None
    partial: bool = False
    missing_tests: list[str] = Field(default_factory=list)


class Summary(YamlModel):
    total: int = 0
    passed: int = 0
    failed: int = 0
    ignored: int = 0
    flaky: int = 0
    known_failures: int = 0
    unexpected_passes: int = 0


class Results(YamlModel):
    metadata: ResultsMetadata
    summary: Summary = Field(default_factory=Summary)
    tests: list[TestRecord] = Field(default_factory=list)


# ---------------------------------------------------------------- settings.yaml


class PassInfo(YamlModel):
    name: str
    kind: str
    triggered_by: str | None = None


class Filters(YamlModel):
    test_filter: list[str] = Field(default_factory=list)
    test_ignore: list[str] = Field(default_factory=list)


class Execution(YamlModel):
    worker_count: int | None = None
    verbose: bool = False
    cache_dir: str
    timeout_seconds: int = 120
    retries: int = 0


class GitInfo(YamlModel):
    repository: str | None = None
    branch: str | None = None
    commit: str | None = None
    dirty_working_tree: bool | None = None


class Settings(YamlModel):
    test_pass: PassInfo
    filters: Filters = Field(default_factory=Filters)
    system: dict[str, str] = Field(default_factory=dict)
    execution: Execution
    git: GitInfo = Field(default_factory=GitInfo)


def to_yaml_data(model: BaseModel) -> dict:
    """A model as YAML-ready data with the files' own (camelCase / dashed) keys."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
