"""Typed models of every YAML shape the seed defines, plus the few we add.

Input files (impls.yaml, test-selection.yaml) forbid unknown keys so that a typo is an error,
not a silently ignored setting. Generated files tolerate extra keys from newer versions.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from cluster.imageid import bare_image_id, image_ref
from cluster.nat import DEFAULT_PRESET, PRESETS
from cluster.progress import FAILED_STEPS

# Checked with fullmatch: `$` in a pattern would also accept a trailing newline.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
GIT_SHA = re.compile(r"[0-9a-f]{40}")
IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")
# GitHub's rules: an owner is 1-39 letters, digits and single inner hyphens; a repository name
# is up to 100 letters, digits, '.', '_' and '-' (but not '.' or '..').
GITHUB_REPO = re.compile(r"(?P<owner>[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38})/(?P<name>[A-Za-z0-9._-]{1,100})")
# A folder or file named in impls.yaml: relative, '/'-separated, no '..', no blank or control
# characters; that it stays inside the repository (symlinks resolved) is checked on load.
_PATH_PART = re.compile(r"[A-Za-z0-9._+@=,-]+")


class Transport(str, Enum):
    TCP = "tcp"
    QUIC = "quic"


class SecureChannel(str, Enum):
    NOISE = "noise"
    TLS = "tls"


class Muxer(str, Enum):
    YAMUX = "yamux"
    MPLEX = "mplex"


class Relay(str, Enum):
    """The Circuit Relay v2 server a test meets through: a dimension of the matrix. Each has
    its image, built from the folder `<value>-relay/` (rust-relay/, go-relay/)."""

    RUST = "rust"
    GO = "go"

    @property
    def image_key(self) -> str:
        """Its image's key in a pass's images (images.yaml) and its folder: `rust-relay`."""
        return f"{self.value}-relay"


DEFAULT_RELAY = Relay.RUST


def _nat_preset(value: str) -> str:
    if value not in PRESETS:
        raise ValueError(f"unknown NAT preset {value!r}; expected one of {', '.join(PRESETS)}")
    return value


# A NAT preset's name (cluster/nat.py PRESETS): a dimension of the test matrix like transports.
NatPreset = Annotated[StrictStr, AfterValidator(_nat_preset)]


class Theory(str, Enum):
    """What theory (cluster/nat.py punch_verdict) says of a test's NAT pair."""

    POSSIBLE = "possible"        # both directions' punch packets get through
    # only one direction's do: enough by the spec, an implementation's limit shows
    ONE_WAY = "one-way"
    IMPOSSIBLE = "impossible"    # neither without port prediction: a pass means the harness is wrong


class Contract(str, Enum):
    """What an implementation's image expects of the harness (impl/README.md, "Two contracts").

    `holepunch`: ours (REDIS_ADDR, TEST_KEY-namespaced keys, our init script routes it).
    `upstream`: libp2p/test-plans hole-punch-interop's, so its images run unmodified: Redis at
    the host name `redis`, bare keys, no entrypoint (the harness routes it and names the command).
    """

    HOLEPUNCH = "holepunch"
    UPSTREAM = "upstream"


def _none_as_empty(value: object) -> object:
    """`test-ignore:` with nothing after it means an empty list, not an error."""
    return [] if value is None else value


def _printable(value: str) -> str:
    """A pattern or alias name is one line of text: control characters are refused."""
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        raise ValueError(f"a control character {bad!r} in {value!r}; expected one line of text")
    return value


Pattern = Annotated[StrictStr, AfterValidator(_printable)]
Patterns = Annotated[list[Pattern], BeforeValidator(_none_as_empty)]


def _timestamp_text(value: object) -> object:
    """YAML reads an unquoted `2025-11-08T12:34:56Z` as a datetime; we keep the seed's text."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


Timestamp = Annotated[str, BeforeValidator(_timestamp_text), StringConstraints(max_length=64)]


# ---------------------------------------------------------------- what messages and manifests hold
# A record comes from a worker, a manifest from a test-pass zip: neither is trusted. Each string
# is bounded, a one-line field holds no control character, and a file name is a plain name under
# its own folder (never absolute, never `..`), so nothing read from them is written elsewhere.
# (Patterns are pydantic's: `$` is the end of the text, a trailing newline does not match.)

NAME_LIMIT = 1024       # a test's name: two implementation ids and a variant
REASON_LIMIT = 8192     # why a test failed: a clipped stdout line, an exception, earlier attempts
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # free text may hold tabs, newlines


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be one line without control characters")
    return value


def _plain_text(value: str) -> str:
    if _CONTROL_IN_TEXT.search(value):
        raise ValueError("must hold no control characters but tabs and newlines")
    return value


Line = Annotated[StrictStr, StringConstraints(max_length=255), AfterValidator(_one_line)]
ShortLine = Annotated[StrictStr, StringConstraints(max_length=64), AfterValidator(_one_line)]
LongLine = Annotated[StrictStr, StringConstraints(max_length=4096), AfterValidator(_one_line)]
TestName = Annotated[StrictStr, StringConstraints(min_length=1, max_length=NAME_LIMIT),
                     AfterValidator(_one_line)]
Text = Annotated[StrictStr, StringConstraints(max_length=REASON_LIMIT), AfterValidator(_plain_text)]
_FILE = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,250}"   # a plain file name: no '/', never '.' or '..'
FileName = Annotated[StrictStr, StringConstraints(pattern=rf"^{_FILE}$")]
LogFile = Annotated[StrictStr, StringConstraints(pattern=rf"^logs/{_FILE}\.log$")]


def _known_step(value: str) -> str:
    if value not in FAILED_STEPS:
        raise ValueError(f"expected one of {', '.join(FAILED_STEPS)}, got {value!r}")
    return value


FailedStep = Annotated[StrictStr, AfterValidator(_known_step)]
CaptureFile = Annotated[StrictStr, StringConstraints(pattern=rf"^captures/{_FILE}\.(pcap|keys)$")]
ComposeFile = Annotated[StrictStr, StringConstraints(pattern=r"^docker-compose/[0-9a-f]{64}\.yaml$")]
CacheFile = Annotated[StrictStr, StringConstraints(pattern=rf"^(snapshots|makefiles|rootfs)/{_FILE}$")]
Id = Annotated[StrictStr, StringConstraints(max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
HexImageId = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Sha256 = HexImageId


def as_reason(text: str) -> str:
    """Any text (an exception, a clipped stdout line) as a record's `reason`: control characters
    shown escaped, clipped to the bound, so the record a worker builds always validates."""
    text = _CONTROL_IN_TEXT.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


def file_stem(test_name: str) -> str:
    """`rust-v0.53 x go-v0.51 (tcp)` -> `rust-v0.53_x_go-v0.51_tcp`: a test's files are named by it."""
    stem = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.-]", "_", test_name)).strip("_.") or "test"
    if len(stem) > 200:  # a file name holds 255 bytes at most: keep it unique with a hash
        stem = stem[:183] + "_" + hashlib.sha256(test_name.encode()).hexdigest()[:16]
    return stem


def log_file_name(test_name: str) -> str:
    """`rust-v0.53 x go-v0.51 (tcp)` -> `logs/rust-v0.53_x_go-v0.51_tcp.log` (the seed's form).

    The one place this name is made: the reporter writes a record's log only under it."""
    return f"logs/{file_stem(test_name)}.log"


# What a test's evidence is taken from: each router's public side (a pcap) and each client's
# TLS/QUIC key log (SSLKEYLOGFILE), so the captures can be decrypted.
CAPTURE_SOURCES: dict[str, str] = {"dialer_router": "pcap", "listener_router": "pcap",
                                   "dialer": "keys", "listener": "keys"}


# A record keeps its last attempt's evidence and, for a flaky test, its last failed attempt's.
CAPTURES_PER_RECORD = 2 * len(CAPTURE_SOURCES)


def capture_file_name(test_name: str, source: str, attempt: int | None = None) -> str:
    """`captures/<stem>.<source>.<pcap|keys>` (the record's last attempt), or an earlier failed
    attempt's `captures/<stem>.attempt-<n>.<source>.<pcap|keys>`: the one place a capture's name
    is made (the reporter accepts a record's captures only under these names)."""
    of_attempt = "" if attempt is None else f".attempt-{attempt}"
    return f"captures/{file_stem(test_name)}{of_attempt}.{source}.{CAPTURE_SOURCES[source]}"


def capture_file_names(test_name: str, attempts: int = 1) -> set[str]:
    """Every name a record of `attempts` attempts may give its captures."""
    return {capture_file_name(test_name, source, attempt) for source in CAPTURE_SOURCES
            for attempt in (None, *range(1, attempts))}


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
    # A github source only: how its image is built (impl/README.md, "github sources").
    # `dockerfile`: the source's own Dockerfile, as its authors build it (needs a registry for
    # its FROM lines); `offline`: the unmodified source with vendored dependencies, through a
    # Dockerfile of ours (in `path`) on our base image, the binary where upstream's image has it.
    build: Literal["dockerfile", "offline"] | None = None

    @field_validator("path", "dockerfile")
    @classmethod
    def _relative_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        inside = "its source folder" if info.field_name == "dockerfile" else "the repository"
        problem = relative_path_problem(value)
        if problem:
            raise ValueError(f"{problem}; expected a relative path inside {inside}, "
                             f"e.g. impl/rust/v0.53 (got {value!r})")
        return value

    @field_validator("repo")
    @classmethod
    def _owner_name(cls, value: str | None) -> str | None:
        match = GITHUB_REPO.fullmatch(value) if value is not None else None
        if value is not None and (not match or match["name"] in (".", "..")):
            raise ValueError(f"expected <owner>/<name> as GitHub spells it, e.g. libp2p/rust-libp2p "
                             f"(not a URL; got {value!r})")
        return value

    @field_validator("commit")
    @classmethod
    def _full_sha(cls, value: str | None) -> str | None:
        if value is not None and not GIT_SHA.fullmatch(value):
            raise ValueError(f"expected the full 40-hex git commit sha in lowercase "
                             f"(got {value!r})")
        return value

    @model_validator(mode="after")
    def _fields_for_type(self) -> Source:
        if self.type == "github":
            if not self.repo:
                raise ValueError("a github source needs repo: <owner>/<name>")
            if not self.commit:
                raise ValueError("a github source needs commit: the full 40-hex git commit sha")
        elif self.build is not None:
            raise ValueError("build: is for github sources (a local source builds with its "
                             "folder's Makefile)")
        return self


def relative_path_problem(value: str) -> str | None:
    """What makes `value` unfit as a path inside a folder, or None."""
    if not value:
        return "an empty path"
    if len(value) > 1024 or any(len(part) > 255 for part in value.split("/")):
        return "a path too long for a file system"
    if value.startswith("/"):
        return "an absolute path"
    for part in value.split("/"):
        if part in ("", "."):
            return "an empty or '.' path component"
        if part == "..":
            return "a '..' path component climbs out"
        if not _PATH_PART.fullmatch(part):
            return ("a path component with characters other than letters, digits and "
                    "'._+@=,-' (no blanks or control characters)")
    return None


class Implementation(_Input):
    id: StrictStr
    source: Source
    transports: list[Transport] = Field(min_length=1)
    secure_channels: Annotated[list[SecureChannel], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list, alias="secureChannels")
    muxers: Annotated[list[Muxer], BeforeValidator(_none_as_empty)] = Field(default_factory=list)
    contract: Contract = Contract.HOLEPUNCH

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not SAFE_ID.fullmatch(value):
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
    test_aliases: dict[Pattern, Pattern | list[Pattern]] = Field(
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
    # Dimensions: every test runs once per (dialer NAT, listener NAT) pair of these lists, and
    # once per relay. `nat` gives both sides; `dialer-nat` / `listener-nat` override one side.
    nat: list[NatPreset] = Field(default_factory=lambda: [DEFAULT_PRESET], min_length=1)
    dialer_nat: list[NatPreset] | None = Field(default=None, alias="dialer-nat", min_length=1)
    listener_nat: list[NatPreset] | None = Field(default=None, alias="listener-nat", min_length=1)
    relays: list[Relay] = Field(default_factory=lambda: [DEFAULT_RELAY], min_length=1)


# ---------------------------------------------------------------- image.yaml


class ImageInfo(YamlModel):
    """An image by its ID: bare hex here and in every file and message; `ref` is the engine's
    name for it. Written by each Makefile, and read back from a test-pass zip by re-run."""

    image_id: str = Field(alias="imageID")
    image_name: Line
    built_at: Timestamp
    arch: ShortLine
    snapshot: CacheFile | None = None
    makefile: CacheFile | None = None

    @field_validator("image_id", mode="before")
    @classmethod
    def _hex_id(cls, value: object) -> object:
        if not isinstance(value, str) or not IMAGE_ID.fullmatch(bare_image_id(value)):
            raise ValueError("imageID must be 64 hex characters (without 'sha256:')")
        return bare_image_id(value)

    @property
    def ref(self) -> str:
        return image_ref(self.image_id)


class ImagesFile(RootModel[dict[Id, ImageInfo]]):
    """images.yaml of a test-pass zip: which image (and snapshot) each part of the pass ran."""


# ---------------------------------------------------------------- test-matrix.yaml


class TestCase(YamlModel):
    """One test: who dials, who listens, over what."""

    __test__ = False  # not a pytest class

    name: TestName
    dialer: Id
    listener: Id
    transport: Transport
    secure_channel: SecureChannel | None = None
    muxer: Muxer | None = None
    dialer_snapshot: CacheFile | None = None
    listener_snapshot: CacheFile | None = None
    expected_failure: StrictBool = False
    dialer_nat: NatPreset = DEFAULT_PRESET
    listener_nat: NatPreset = DEFAULT_PRESET
    relay: Relay = DEFAULT_RELAY
    # theory's verdict on the NAT pair (cluster/nat.py); None in matrices from older versions
    theory: Theory | None = None
    # Set only for a side whose image follows the upstream contract (None: ours), so a matrix of
    # our own implementations reads as it always did.
    dialer_contract: Contract | None = None
    listener_contract: Contract | None = None

    @property
    def variant(self) -> str:
        """What the name's parentheses hold: `tcp` or `tcp, noise, yamux`."""
        return ", ".join(p.value for p in (self.transport, self.secure_channel, self.muxer) if p)

    def dimensions(self) -> dict[str, object]:
        """The NAT pair, relay and theory, as a record carries them."""
        return {"dialer_nat": self.dialer_nat, "listener_nat": self.listener_nat,
                "relay": self.relay, "theory": self.theory}


class MatrixMetadata(YamlModel):
    generated_at: Timestamp
    kind: Id = "full"
    filter: list[LongLine] = Field(default_factory=list)
    ignore: list[LongLine] = Field(default_factory=list)
    known_failures: list[LongLine] = Field(default_factory=list)
    # the NAT presets and relays the pass multiplied its tests over
    dialer_nats: list[NatPreset] = Field(default_factory=lambda: [DEFAULT_PRESET])
    listener_nats: list[NatPreset] = Field(default_factory=lambda: [DEFAULT_PRESET])
    relays: list[Relay] = Field(default_factory=lambda: [DEFAULT_RELAY])
    total_tests: StrictInt = Field(ge=0)
    ignored_tests: StrictInt = Field(default=0, ge=0)


class TestMatrix(YamlModel):
    __test__ = False

    metadata: MatrixMetadata
    tests: list[TestCase] = Field(default_factory=list)


# ---------------------------------------------------------------- results.yaml


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    FLAKY = "flaky"  # failed, then passed on a retry: never counted as a plain pass
    # The test could not be run (an image fetch, the engine, a worker, a record that failed
    # validation) even after its retries: says nothing about the implementations, so it is
    # never a pass, a fail or a known failure; the pass exits 3.
    ERROR = "error"


class PeerRecord(YamlModel):
    version: Id
    snapshot: CacheFile | None = None
    makefile: CacheFile | None = None
    image_id: HexImageId | None = Field(default=None, alias="imageID")

    @classmethod
    def of(cls, version: str, image: ImageInfo) -> PeerRecord:
        """One side of a test as the image it ran."""
        return cls(version=version, snapshot=image.snapshot, makefile=image.makefile,
                   image_id=image.image_id)


class TestRecord(YamlModel):
    """What one run of one test produced; the seed's results.yaml entry plus who ran it.

    It arrives from a worker as a message: every field is checked (types strict, strings
    bounded, file names under their folders) before the reporter writes anything from it.
    """

    __test__ = False

    name: TestName
    status: Status
    exit_code: StrictInt | None = Field(default=None, ge=-(2 ** 31), lt=2 ** 32)
    rtt_ms: StrictFloat | None = Field(default=None, ge=0, allow_inf_nan=False)
    duration: ShortLine | None = None
    docker_compose: ComposeFile | None = None
    dialer: PeerRecord
    listener: PeerRecord
    log_file: LogFile | None = None
    transport: Line | None = None  # the variant, as in the name's parentheses
    host: Line | None = None
    reason: Text | None = None
    attempts: StrictInt = Field(default=1, ge=1, le=10_000)
    expected_failure: StrictBool = False
    # When the worker began and ended its (last) run, UTC ISO with milliseconds: the timeline of
    # results.html. Absent in records from older workers.
    started_at: ShortLine | None = None
    finished_at: ShortLine | None = None
    # Timings the dialer reported (absent from images that print only the RTT): from the dial
    # of the relayed address to the direct connection, and every ping over it (rttMs is their
    # median).
    time_to_direct_ms: StrictFloat | None = Field(default=None, ge=0, allow_inf_nan=False)
    rtt_samples_ms: list[Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]] | None = \
        Field(default=None, max_length=100)
    # Set by the reporter (cluster.timings): a passing RTT more than 10 % off the model's.
    rtt_anomaly: Line | None = None
    # A failed test: the step it stopped at (cluster.progress), from the clients' progress lines.
    failed_step: FailedStep | None = None
    # Evidence kept for the test (captures/<stem>.<source>.pcap|keys), bundled in the zip; a
    # flaky test's failed attempt's too (captures/<stem>.attempt-<n>.<source>.pcap|keys).
    captures: list[CaptureFile] | None = Field(default=None, max_length=CAPTURES_PER_RECORD)
    # The NAT each side sat behind, the relay, and theory's verdict on the pair. Records from
    # older workers lack them: the defaults are what those workers ran.
    dialer_nat: NatPreset = DEFAULT_PRESET
    listener_nat: NatPreset = DEFAULT_PRESET
    relay: Relay = DEFAULT_RELAY
    theory: Theory | None = None

    @property
    def ok(self) -> bool:
        """Whether this record lets the pass succeed: a pass, a flaky pass, or a known failure
        that failed. A plain failure fails the pass; an error says the test was never judged."""
        if self.status is Status.FAIL:
            return self.expected_failure
        return self.status is not Status.ERROR

    @classmethod
    def error(cls, test: TestCase, reason: str, host: str | None = None,
              dialer: PeerRecord | None = None, listener: PeerRecord | None = None,
              log_file: str | None = None, attempts: int = 1) -> TestRecord:
        """The record of a test that ended on an infrastructure fault: its own outcome, even
        when the test is a known failure."""
        return cls(name=test.name, status=Status.ERROR,
                   dialer=dialer or PeerRecord(version=test.dialer),
                   listener=listener or PeerRecord(version=test.listener),
                   transport=test.variant, host=host, reason=as_reason(reason),
                   log_file=log_file, attempts=attempts, expected_failure=test.expected_failure,
                   **test.dimensions())


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
    errors: int = 0  # tests that ended on an infrastructure fault (status error)


class Results(YamlModel):
    metadata: ResultsMetadata
    summary: Summary = Field(default_factory=Summary)
    tests: list[TestRecord] = Field(default_factory=list)


# ---------------------------------------------------------------- settings.yaml


# Written by submit, read back by finish and by a re-run from a test-pass zip (not trusted:
# `kind` names the re-run's own zip, so it is an id like any other).


class PassInfo(YamlModel):
    name: Line
    kind: Id
    triggered_by: LongLine | None = None


class Filters(YamlModel):
    test_filter: list[LongLine] = Field(default_factory=list)
    test_ignore: list[LongLine] = Field(default_factory=list)


class Execution(YamlModel):
    worker_count: StrictInt | None = Field(default=None, ge=1)
    verbose: StrictBool = False
    cache_dir: LongLine
    timeout_seconds: StrictInt = Field(default=120, gt=0, le=7 * 24 * 3600)
    # A known failure's own timeout (submit --known-failure-timeout); None: --timeout for all.
    known_failure_timeout_seconds: StrictInt | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    retries: StrictInt = Field(default=0, ge=0, le=100)
    broker: Literal["embedded", "external"] | None = None


class GitInfo(YamlModel):
    repository: LongLine | None = None
    branch: LongLine | None = None
    commit: LongLine | None = None
    dirty_working_tree: StrictBool | None = None


class Settings(YamlModel):
    test_pass: PassInfo
    filters: Filters = Field(default_factory=Filters)
    # platform, os, osVersion, docker, dockerCompose (null: no docker-compose runs the tests),
    # python, controllerHost
    system: dict[Line, LongLine | None] = Field(default_factory=dict)
    execution: Execution
    git: GitInfo = Field(default_factory=GitInfo)


def to_yaml_data(model: BaseModel) -> dict[str, Any]:
    """A model as YAML-ready data with the files' own (camelCase / dashed) keys."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
