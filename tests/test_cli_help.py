"""Every command's --help as users read it, from the installed `zoo`: usage
lines that show the arguments as written, no type labels, option help that is
true for the command it is on."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import typer.main
from conftest import MODEL, Zoo
from httpserver import FileServer
from test_cli import all_commands

from zoo_cli.main import app

COMMANDS = [name for name, _ in all_commands()]
GROUPS = sorted({name.split()[0] for name in COMMANDS if " " in name})
# What Typer prints for a parameter without a metavar: `<bool>`, `<list[str]>`, `<int range> [x>=1]`, `{DIR}`.
TYPE_LABEL = re.compile(r"<[a-z][\w\[\], .]*>|\[x[<>]=|\{[A-Z]")
USAGE = {
    "fetch": "zoo fetch [OPTIONS] NAME...",
    "lock": "zoo lock [OPTIONS] [NAME...]",
    "info": "zoo info [OPTIONS] NAME",
    "cache rm": "zoo cache rm [OPTIONS] NAME...",
    "mirror build": "zoo mirror build [OPTIONS] DIR [NAME...]",
    "bundle create": "zoo bundle create [OPTIONS] FILE.tar NAME...",
    "inspect": "zoo inspect [OPTIONS] NAME|PATH",
}
# Commands that draw a progress bar, so whose --quiet may say it drops one.
WITH_BAR = {"fetch", "config", "mirror build"}


def help_of(zoo: Zoo, command: str) -> str:
    result = zoo.run(*command.split(), "--help")
    assert result.returncode == 0 and result.stderr == "", (command, result.stderr)
    return result.stdout


@pytest.mark.parametrize("command", ["", *GROUPS, *COMMANDS])
def test_help_shows_metavars_not_types_and_usage_as_written(zoo: Zoo, command: str):
    text = help_of(zoo, command)
    assert not TYPE_LABEL.search(text), (command, TYPE_LABEL.search(text))
    usage = text.splitlines()[0]
    assert re.fullmatch(r"Usage: zoo( [a-z]+)* \[OPTIONS\]( \[?[A-Z][\w.|]*\]?)*( COMMAND \[ARGS\]\.\.\.)?", usage), usage
    if command in USAGE:
        assert usage == f"Usage: {USAGE[command]}"
    for line in text.splitlines():
        if re.match(r"\s+-q, --quiet", line) and command not in WITH_BAR:
            assert "progress" not in line, (command, line)


def test_root_help_lists_every_command_with_its_summary(zoo: Zoo):
    text = help_of(zoo, "")
    listed = re.findall(r"^  ([a-z]+)\s{2,}\S", text.split("Commands:")[1], flags=re.MULTILINE)
    assert listed == list(typer.main.get_command(app).lazy)
    assert "--install-completion" in text


def test_mirror_build_takes_mirror_only_and_never_reaches_upstream(zoo: Zoo, upstream: FileServer, tmp_path):
    first, second, empty = tmp_path / "first", tmp_path / "second", tmp_path / "empty"
    empty.mkdir()
    missing = zoo.run("mirror", "build", str(second), MODEL, "--mirror", str(empty), "--mirror-only")
    assert missing.returncode == 5 and upstream.requests == [], missing.stderr
    assert zoo.run("mirror", "build", str(first), MODEL).returncode == 0
    upstream.clear_log()
    copied = zoo.run("mirror", "build", str(second), MODEL, "--mirror", str(first), "--mirror-only")
    assert copied.returncode == 0 and upstream.requests == [], copied.stderr
    assert zoo.run("mirror", "verify", str(second)).returncode == 0


# The console entry point, then the modules it imported, on stderr's last line.
PROBE = """
import json, sys
from zoo_cli.main import main
sys.argv = ["zoo", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def test_option_values_are_checked_and_start_up_never_imports_pydantic_or_rich(zoo: Zoo):
    assert zoo.run("fetch", MODEL).returncode == 0
    for args in (["fetch", MODEL, "-j", "2"], ["list", "--registry", str(zoo.registry)], ["--help"], ["fetch", "--help"]):
        result = subprocess.run([sys.executable, "-c", PROBE, *args], env=zoo.env, capture_output=True, text=True, timeout=60)
        modules = set(json.loads(result.stderr.splitlines()[-1]))
        assert not {"pydantic", "rich", "requests", "tqdm"} & modules, args
    for value, message in [("0", "must be at least 1, got 0"), ("two", "'two' is not a whole number")]:
        refused = zoo.run("fetch", MODEL, "--jobs", value)
        assert refused.returncode == 2 and f"Invalid value for '--jobs' / '-j': {message}" in refused.stderr
