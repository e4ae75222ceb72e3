"""Every error the shared core raises, each mapped to a process exit code.

Exit codes (DESIGN.md): 0 all passed, 1 a test failed, 2 bad input, 3 infrastructure,
4 internal error (a bug of ours: never a verdict on the tests), 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_TEST_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRASTRUCTURE = 3
EXIT_INTERNAL = 4  # an unexpected exception: its traceback goes to a file, not to the user
EXIT_INTERRUPTED = 130


class HolepunchError(Exception):
    """Base of our errors; `exit_code` says how the CLI ends when one escapes."""

    exit_code = EXIT_INFRASTRUCTURE


class ConfigError(HolepunchError):
    """Bad input: names the file, the key and what was expected."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, source: str | Path | None, key: str | None, problem: str):
        self.source = str(source) if source is not None else None
        self.key = key
        self.problem = problem
        where = ": ".join(part for part in (self.source, key) if part)
        super().__init__(f"{where}: {problem}" if where else problem)


class UsageError(ConfigError):
    """Bad command-line input (a flag's value), reported like a config error."""

    def __init__(self, option: str, problem: str):
        super().__init__(None, option, problem)


class InfrastructureError(HolepunchError):
    """The machine cannot do the job: no engine, no broker, a failed build."""

    exit_code = EXIT_INFRASTRUCTURE
