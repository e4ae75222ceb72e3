"""Safe YAML in and out, and validation errors that name the file and the key.

Only the safe loader is used: a YAML file never builds arbitrary Python objects. It also
refuses a key given twice in one mapping, which plain YAML loaders resolve silently (the last
one wins), so that a pasted-over setting cannot hide.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from cluster.errors import ConfigError

if TYPE_CHECKING:  # libyaml's loader when it is there; both share SafeLoader's constructor
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

M = TypeVar("M", bound=BaseModel)

_MERGE_TAG = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(_SafeLoader):
    """The safe loader, refusing a mapping that names one key twice (`<<` merges still work:
    keys given beside a merge override it, as YAML means them to)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first_seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first_seen.setdefault(key, key_node)
                except TypeError:
                    continue  # unhashable: the base class refuses it with its own message
                if earlier is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"duplicate key {key!r} (first given on line {earlier.start_mark.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str | Path) -> Any:
    """Parse YAML text; a syntax error becomes a ConfigError with its line and column."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - the loader is the safe one
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise ConfigError(source, where, f"malformed YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, None, f"malformed YAML: {exc}") from exc
    except RecursionError:
        raise ConfigError(source, None, "malformed YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # The safe constructors raise these for values the grammar admits but Python cannot
        # hold, e.g. the date 2025-13-45.
        raise ConfigError(source, None, f"malformed YAML: a value cannot be read: {exc}") from None


def read_text(path: Path) -> str:
    """A config file's text; a missing or unreadable file is a ConfigError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(path, None, "file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from exc


def read_yaml(path: Path) -> Any:
    """Read and parse one YAML file."""
    return parse_yaml(read_text(path), path)


def dump_yaml(data: Any) -> str:
    """Block-style YAML that keeps the key order it was given."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=1000)


def key_path(loc: tuple[int | str, ...]) -> str:
    """('implementations', 2, 'transports', 0) -> 'implementations[2].transports[0]'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            part = part if str(part).isprintable() else repr(part)  # no escapes reach a terminal
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def validate(model: type[M], data: Any, source: str | Path) -> M:
    """Validate parsed YAML against a model; every problem is named by its key."""
    if data is None:
        raise ConfigError(source, None, "the file is empty; expected a mapping")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors()]
        first_key, first_problem = problems[0]
        more = "".join(f"\n  {key}: {problem}" for key, problem in problems[1:])
        raise ConfigError(source, first_key, first_problem + more) from None


def load_model(model: type[M], path: Path) -> M:
    return validate(model, read_yaml(path), path)


# Parts pydantic adds to a location to say which member of a union or which validator failed:
# not keys of the file, so left out of the key path.
_VALIDATOR_STEP = re.compile(r"(function-[a-z]+|list|dict|union|nullable|tagged-union)\[.*\]|str|int")


def _describe(err: ErrorDetails) -> tuple[str, str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _VALIDATOR_STEP.fullmatch(p)))
    if loc and loc[-1] == "[key]":  # the key itself is wrong, not its value
        return key_path(loc[:-1]) + " (the key)", _describe_problem(err)
    return key_path(loc), _describe_problem(err)


def _describe_problem(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping (got {_kind_of(err.get('input'))})"
    message = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    if kind not in ("value_error",) and not isinstance(got, (dict, list)):
        message = f"{message} (got {got!r})"
    return message


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return repr(value) if len(repr(value)) <= 40 else f"a {type(value).__name__}"
