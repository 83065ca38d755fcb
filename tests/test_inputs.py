"""Configs, label maps, registries and lock files come from the user: only a
regular file of bounded size is read. /dev/zero, a FIFO nobody writes to, a
directory or a huge file each get a one-line error, never a hang or an OOM."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, Zoo

from zoo.fsutil import MAX_INPUT_BYTES


def dev_zero(tmp_path: Path) -> tuple[Path, str]:
    return Path("/dev/zero"), "not a regular file"


def fifo(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "fifo"
    os.mkfifo(path)  # nobody ever writes to it: a blocking read would wait forever
    return path, "not a regular file"


def directory(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "a-directory"
    path.mkdir()
    return path, "not a regular file"


def huge(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "huge"
    path.touch()
    os.truncate(path, MAX_INPUT_BYTES + (1 << 20))  # 65 MiB, sparse
    return path, "larger than 64 MiB"


INPUTS: list[Callable[[Path], tuple[Path, str]]] = [dev_zero, fifo, directory, huge]

# (test id, the arguments with {} for the path, extra environment, what the error calls it, exit code);
# a lock file is a registry file that only pins, and is read as one.
COMMANDS = [
    ("check", ["check", "{}"], {}, "config", 11),
    ("config --from", ["config", MODEL, "--from", "{}"], {}, "config", 11),
    ("config --label-map", ["config", MODEL, "--label-map", "{}"], {}, "label map", 11),
    ("ZOO_REGISTRY", ["list"], {"ZOO_REGISTRY": "{}"}, "registry file", 4),
    ("--registry", ["list", "--registry", "{}"], {}, "registry file", 4),
    ("lock --key", ["lock", "--key", "{}"], {}, "registry file", 4),
    ("fetch --lock", ["fetch", "--lock", "{}"], {}, "registry file", 4),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", INPUTS, ids=[make.__name__ for make in INPUTS])
@pytest.mark.parametrize("args, env, what, code", [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_outside_input_is_a_bounded_regular_file(
    zoo: Zoo, tmp_path: Path, make: Callable[[Path], tuple[Path, str]], args: list[str], env: dict[str, str],
    what: str, code: int,
):  # fmt: skip
    path, problem = make(tmp_path)
    if "ZOO_REGISTRY" in env:
        zoo.env.pop("ZOO_REGISTRY")
    result = zoo.run(
        *(arg.format(path) for arg in args), timeout=30, **{k: v.format(path) for k, v in env.items()}
    )
    assert result.returncode == code, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"zoo: error: {path}: {problem}") and "Traceback" not in result.stderr
    assert f"a {what}" in last
