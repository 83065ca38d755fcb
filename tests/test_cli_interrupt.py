"""Ctrl-C and shell completion, as a shell delivers them to the installed `zoo`."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from conftest import MODEL, TARBALL_PATH, Zoo, model_entry
from httpserver import FileServer

INTERRUPTED = "zoo: interrupted; run the same command to resume"


def test_ctrl_c_says_how_to_resume_on_its_own_line_exits_130_and_the_next_run_resumes(
    zoo: Zoo, upstream: FileServer
):
    upstream.throttle(TARBALL_PATH, 256 * 1024)
    fetching = zoo.popen("fetch", MODEL)
    partial = zoo.cache / "downloads" / f"{MODEL}@{MODEL}.tar.gz.part"
    while not partial.exists() or partial.stat().st_size < 256 * 1024:
        assert fetching.poll() is None, fetching.communicate()
        time.sleep(0.02)
    fetching.send_signal(signal.SIGINT)
    stdout, stderr = fetching.communicate(timeout=60)
    assert fetching.returncode == 130, stderr
    assert stdout == "" and (stderr == f"{INTERRUPTED}\n" or stderr.endswith(f"\n{INTERRUPTED}\n")), stderr
    kept = partial.stat().st_size
    assert kept >= 256 * 1024

    upstream.throttle(TARBALL_PATH, None)
    upstream.clear_log()
    resumed = zoo.run("fetch", MODEL)
    assert resumed.returncode == 0, resumed.stderr
    ranges = [r.range for r in upstream.requests if r.path == TARBALL_PATH]
    assert ranges and ranges[0] == f"bytes={kept}-", ranges


def test_ctrl_c_on_a_terminal_ends_the_progress_bar_line_first(zoo: Zoo, upstream: FileServer):
    upstream.throttle(TARBALL_PATH, 256 * 1024)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # tqdm draws nothing 0 wide
    fetching = subprocess.Popen(zoo.command("fetch", MODEL), env=zoo.env, stdout=terminal, stderr=terminal)
    os.close(terminal)
    screen = b""
    while b"B/s" not in screen.split(b"\r")[-1]:  # the bar has drawn with a rate
        screen += os.read(controller, 4096)
    fetching.send_signal(signal.SIGINT)
    assert fetching.wait(timeout=60) == 130
    with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
        while chunk := os.read(controller, 4096):
            screen += chunk
    os.close(controller)
    before, message, after = screen.decode().rpartition(INTERRUPTED)
    assert message and after == "\r\n" and before.endswith("\n"), screen[-300:]
    assert "B/s" in before.rstrip().splitlines()[-1].split("\r")[-1]  # the bar's last state stays above


# Runs the console entry point the way the completion script does, then reports
# which modules the completion imported.
PROBE = """
import json, sys
from zoo_cli.main import main
sys.argv = ["zoo"]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def complete(zoo: Zoo, words: str) -> tuple[list[str], set[str]]:
    env = {**zoo.env, "_ZOO_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split(), set(json.loads(result.stderr.splitlines()[-1]))


def test_completion_offers_model_names_and_aliases_without_the_download_stack(zoo: Zoo):
    names, modules = complete(zoo, "zoo fetch ssd_resnet50_v1")
    assert {"ssd_resnet50_v1_fpn", MODEL, "ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8"} <= set(names)
    assert all(name.startswith("ssd_resnet50_v1") for name in names)
    assert not {"requests", "tqdm", "urllib3", "pydantic", "rich"} & modules
    assert complete(zoo, "zoo cache rm efficientdet_d")[0][0].startswith("efficientdet_d")
    assert "cache" in complete(zoo, "zoo ca")[0]


def test_install_completion_is_offered(zoo: Zoo):
    # Typer asks which shell started zoo (shellingham walks the parent
    # processes), so zoo runs from bash, as a user's terminal would start it;
    # "; exit" keeps bash from exec-ing zoo in its own place.
    command = subprocess.list2cmdline(zoo.command("--show-completion"))
    shown = subprocess.run(["bash", "-c", f"{command}; exit $?"], env={**zoo.env, "SHELL": "/bin/bash"},
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0 and "_ZOO_COMPLETE=complete_bash" in shown.stdout, shown.stderr


@pytest.mark.timeout(90)
def test_ctrl_c_with_several_jobs_exits_at_once_and_keeps_every_partial(zoo: Zoo, upstream: FileServer, tarball):
    second = "/models/second.tar.gz"
    upstream.add(second, tarball.read_bytes())
    zoo.write_registry([model_entry(upstream), model_entry(upstream, name="second_model", aliases=[],
                                                           url=upstream.url_for(second), sample_config=None)])  # fmt: skip
    for path in (TARBALL_PATH, second):
        upstream.throttle(path, 128 * 1024)
    fetching = zoo.popen("fetch", MODEL, "second_model", "--jobs", "2")
    partials = [zoo.cache / "downloads" / f"{name}@{Path(path).name}.part"
                for name, path in ((MODEL, TARBALL_PATH), ("second_model", second))]  # fmt: skip
    while not all(p.exists() and p.stat().st_size >= 128 * 1024 for p in partials):
        assert fetching.poll() is None, fetching.communicate()
        time.sleep(0.02)
    fetching.send_signal(signal.SIGINT)
    # Before the fix the pool waited for both throttled downloads to finish (about 16 s each).
    _, stderr = fetching.communicate(timeout=10)
    assert fetching.returncode == 130 and stderr.endswith(f"{INTERRUPTED}\n"), stderr
    assert all(p.stat().st_size >= 128 * 1024 for p in partials)
