"""Publication stays correct when the per-model lock does nothing (a shared
cache on a file system where flock is a no-op): processes that each staged
the same model publish it without any lock, and all end with one entry."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MODEL, Zoo
from zoo.cache import MARKER, Cache, Entry

# Stages a copy of a published entry's files and publishes it, taking no lock,
# once the test says go: N of these race on one rename.
PUBLISHER = (
    "import json, shutil, sys\n"
    "from pathlib import Path\n"
    "from zoo.cache import Cache, Entry\n"
    "cache, template = Cache(Path(sys.argv[1])), Path(sys.argv[2])\n"
    "entry = Entry(**{**json.loads(sys.argv[3]), 'directory': cache.entry_dir(sys.argv[4])})\n"
    "with cache.staging(entry.name) as staged:\n"
    "    shutil.copytree(template, staged, dirs_exist_ok=True)\n"
    "    print('ready', flush=True)\n"
    "    sys.stdin.readline()\n"
    "    published = cache.publish(staged, entry)\n"
    "print(json.dumps({'directory': str(published.directory), 'inode': published.directory.stat().st_ino}))\n"
)


def published_template(zoo: Zoo) -> tuple[Path, dict]:
    """The model's published files (no marker) and marker fields, with the entry itself removed."""
    assert zoo.run("fetch", MODEL).returncode == 0
    entry = zoo.cache / "models" / MODEL
    marker = json.loads((entry / MARKER).read_text())
    del marker["format"]
    template = zoo.home / "template"
    shutil.copytree(entry, template, ignore=shutil.ignore_patterns(MARKER))
    shutil.rmtree(entry)
    return template, marker


@pytest.mark.timeout(180)
@pytest.mark.parametrize("locks", ["auto", "none"])  # staging's own lock is a lock file under none
def test_racing_publishers_without_a_lock_all_return_the_one_published_entry(zoo: Zoo, locks: str):
    template, marker = published_template(zoo)
    zoo.env["ZOO_LOCKS"] = locks
    publishers = [
        subprocess.Popen([sys.executable, "-c", PUBLISHER, str(zoo.cache), str(template), json.dumps(marker), MODEL],
                         env=zoo.env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        for _ in range(6)
    ]
    assert [p.stdout.readline() for p in publishers] == ["ready\n"] * 6
    for publisher in publishers:
        publisher.stdin.write("go\n")
        publisher.stdin.flush()
    outputs = [publisher.communicate(timeout=120) for publisher in publishers]
    assert [p.returncode for p in publishers] == [0] * 6, outputs
    results = [json.loads(out) for out, _err in outputs]
    # One directory, never replaced under anyone: each process got the same inode.
    assert {(r["directory"], r["inode"]) for r in results} == {(str(zoo.cache / "models" / MODEL),
                                                                (zoo.cache / "models" / MODEL).stat().st_ino)}
    assert zoo.published() == [MODEL] and list((zoo.cache / "tmp").iterdir()) == []
    assert zoo.run("verify", MODEL).returncode == 0
    assert json.loads(zoo.run("fetch", MODEL, "--json").stdout)["from_cache"] is True


def test_publishing_bytes_already_published_keeps_the_entry_readers_hold(zoo: Zoo):
    template, marker = published_template(zoo)
    cache = Cache(zoo.cache)
    entry = Entry(**marker, directory=cache.entry_dir(MODEL))
    inodes = []
    for _ in range(2):
        with cache.staging(MODEL) as staged:
            shutil.copytree(template, staged, dirs_exist_ok=True)
            published = cache.publish(staged, entry)
        inodes.append(published.directory.stat().st_ino)
    assert inodes[0] == inodes[1] and published.files_present()
    assert list((zoo.cache / "tmp").iterdir()) == []
