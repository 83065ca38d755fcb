"""The CLI as users meet it: listing, info, cache commands, verify, errors, docs."""

from __future__ import annotations

import json
import shutil
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import typer.main

from zoo_cli.main import app
from conftest import MODEL, ROOT, Zoo, clean_env
from httpserver import FileServer
from zoo.errors import EXIT_CODES
from zoo.settings import Settings

README = (ROOT / "README.md").read_text()


def test_the_cli_path_never_imports_tensorflow(zoo: Zoo):
    probe = (
        "import sys\n"
        "from zoo_cli.main import main\n"
        "sys.argv = ['zoo', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TENSORFLOW' if 'tensorflow' in sys.modules else 'NO-TENSORFLOW', file=sys.stderr)\n"
    )
    commands = (["--help"], ["list"], ["info", "ssd_resnet50_v1_fpn"], ["fetch", MODEL], ["fetch", MODEL],
                ["verify"], ["inspect", MODEL])  # fmt: skip
    for args in commands:
        result = subprocess.run(
            [sys.executable, "-c", probe, *args], env=zoo.env, capture_output=True, text=True, timeout=60
        )
        assert result.stderr.strip().endswith("NO-TENSORFLOW"), (args, result.stderr)


def test_list_filters_and_marks_cached(zoo: Zoo):
    header, *classification = zoo.run("list", "--family", "tf2-classification").stdout.splitlines()
    assert header.split() == ["NAME", "FAMILY", "ARCHITECTURE", "INPUT", "px", "SPEED", "ms", "COCO", "mAP", "MEASURED", "ON"]
    assert len(classification) == 14
    # A phone's latency says so, next to the desktop GPU times of the other rows.
    (edgetpu,) = [r for r in zoo.run("list", "--family", "tf1-detection").stdout.splitlines()
                  if r.split()[0] == "ssdlite_mobiledet_edgetpu_320x320_coco_2020_05_19"]  # fmt: skip
    assert edgetpu.endswith("6.9 25.9/25.6  Pixel 4 Edge TPU; COCO mAP (fp32/uint8)")
    faster = zoo.run("list", "--arch", "faster_rcnn", "--json").stdout.splitlines()
    assert faster and all("faster_rcnn" in json.loads(line)["meta_architecture"] for line in faster)
    empty = zoo.run("list", "--cached")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "zoo: no model in the cache matches\n")
    nothing = zoo.run("list", "--arch", "no_such_architecture")
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "zoo: no model matches\n")
    zoo.run("fetch", MODEL)
    cached = zoo.run("list", "--cached").stdout.splitlines()
    assert len(cached) == 2 and cached[1].startswith(f"* {MODEL}")
    rows = [json.loads(line) for line in zoo.run("list", "--json").stdout.splitlines()]
    assert len(rows) == 104 and [r["name"] for r in rows if r["cached"]] == [MODEL]


def test_info_shows_the_default_and_its_variants(zoo: Zoo):
    text = zoo.run("info", "ssd_resnet50_v1_fpn").stdout
    assert f"name: {MODEL}" in text
    assert "variants: ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8" in text
    data = json.loads(zoo.run("info", "efficientdet_d0", "--json").stdout)
    assert data["sample_config"]["path"].endswith("ssd_efficientdet_d0_512x512_coco17_tpu-8.config")
    assert data["cached"] is False and data["variants"] == []


def test_cache_ls_du_rm_and_prune(zoo: Zoo):
    assert zoo.run("fetch", MODEL).returncode == 0
    listing = zoo.run("cache", "ls").stdout
    assert MODEL in listing and str(zoo.cache / "models" / MODEL / "files") in listing
    usage = {row["name"]: row["bytes"] for row in map(json.loads, zoo.run("cache", "du", "--json").stdout.splitlines())}
    assert usage[MODEL] > 2 * 1024 * 1024 and usage["total"] == sum(v for k, v in usage.items() if k != "total")

    leftovers = [
        zoo.cache / "downloads" / "other@x.tar.gz.part",
        zoo.cache / "tmp" / "other@0123456789abcdef" / "half.bin",
        zoo.cache / "models" / "unmarked" / "files" / "x",
    ]
    not_zoos = [zoo.cache / "downloads" / "data.bin", zoo.cache / "tmp" / "notes" / "a.txt",
                zoo.cache / "models" / "research" / "train.py"]  # fmt: skip
    for path in leftovers + not_zoos:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    pruned = zoo.run("cache", "prune").stdout
    assert pruned.count("removed ") == 3
    assert not any(path.exists() for path in leftovers)
    assert all(path.exists() for path in not_zoos)  # named as zoo never names anything
    for path in not_zoos:
        shutil.rmtree(path.parent) if path.parent.name in ("research", "notes") else path.unlink()
    assert zoo.published() == [MODEL]

    removed = zoo.run("cache", "rm", "ssd_resnet50_v1_fpn")
    assert removed.returncode == 0 and f"removed {MODEL}" in removed.stdout
    assert zoo.published() == []
    empty = zoo.run("cache", "ls")
    assert (empty.stdout, empty.stderr) == ("", f"zoo: no model this zoo can use in the cache at {zoo.cache}\n")
    assert zoo.run("verify").stderr == f"zoo: nothing to verify: no model this zoo can use in the cache at {zoo.cache}\n"
    assert zoo.run("cache", "prune").stderr == f"zoo: nothing to prune in {zoo.cache}\n"
    again = zoo.run("cache", "rm", MODEL)
    assert again.returncode == 10 and "is not in the cache" in again.stderr


def test_prune_keeps_the_files_of_a_fetch_in_progress(zoo: Zoo, upstream: FileServer):
    from conftest import TARBALL_PATH

    upstream.throttle(TARBALL_PATH, 128 * 1024)
    fetching = zoo.popen("fetch", MODEL)
    partial = zoo.cache / "downloads" / f"{MODEL}@{MODEL}.tar.gz.part"
    while not partial.exists():
        assert fetching.poll() is None
        time.sleep(0.02)
    assert zoo.run("cache", "prune").stdout == ""
    assert partial.exists()
    fetching.kill()
    fetching.wait()
    assert "removed" in zoo.run("cache", "prune").stdout
    assert not partial.exists()


def test_verify_rehashes_and_checks_every_tensor(zoo: Zoo):
    assert zoo.run("fetch", MODEL).returncode == 0
    good = zoo.run("verify", "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["ok"] is True
    shard = zoo.cache / "models" / MODEL / "files" / MODEL / "checkpoint" / "ckpt-0.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    flipped = zoo.run("verify", MODEL)
    assert flipped.returncode == 6
    assert re.search(r"ckpt-0.data-00000-of-00001: tensor 'model/[^']+' at offset \d+ .* fails its CRC32C", flipped.stdout)
    assert flipped.stderr.strip() == "zoo: error: 1 of 1 cached model(s) failed verification"
    shard.unlink()
    missing = zoo.run("verify", MODEL)
    assert missing.returncode == 6 and "ckpt-0.data-00000-of-00001: data shard is missing" in missing.stdout
    assert zoo.run("verify", "efficientdet_d0").returncode == 10


def test_inspect_a_cached_model_or_a_path(zoo: Zoo, tmp_path: Path):
    assert zoo.run("inspect", MODEL).returncode == 10
    assert zoo.run("fetch", MODEL).returncode == 0
    by_name = json.loads(zoo.run("inspect", "ssd_resnet50_v1_fpn", "--json").stdout)
    assert by_name["format"] == "tf2-object-based"
    assert by_name["model_children"] == ["_box_predictor", "_feature_extractor"]
    directory = zoo.cache / "models" / MODEL / "files" / MODEL / "checkpoint"
    by_path = json.loads(zoo.run("inspect", str(directory), "--json", "--filter", "model/_box_predictor").stdout)
    assert by_path["prefix"] == str(directory / "ckpt-0")
    assert by_path["variables"] and all(v["name"].startswith("model/_box_predictor") for v in by_path["variables"])
    text = zoo.run("inspect", str(directory / "ckpt-0.index")).stdout
    assert "root objects: model, save_counter" in text
    garbage = tmp_path / "x.index"
    garbage.write_bytes(b"not an index at all" * 10)
    broken = zoo.run("inspect", str(garbage))
    assert broken.returncode == 6 and broken.stderr.startswith(f"zoo: error: {garbage}")


def test_in_process_and_subprocess_runs_exit_alike(zoo: Zoo, tmp_path: Path):
    from typer.testing import CliRunner

    broken = tmp_path / "broken.json"
    broken.write_text('{"format": 1, "models": [{"name": "x", "family": "tf2-detection"}]}')
    cases = [
        (["fetch"], 2),
        (["config", MODEL, "--checkpoint-type", "fine_tune"], 2),
        (["info", "no_such_model"], 3),
        (["list", "--registry", str(broken)], 4),
        (["inspect", "/nonexistent/ckpt-0"], 6),
    ]
    for args, code in cases:
        in_process = CliRunner().invoke(app, args, env=zoo.env)
        subprocess_run = zoo.run(*args)
        assert (in_process.exit_code, subprocess_run.returncode) == (code, code), args
        assert in_process.stderr == subprocess_run.stderr and in_process.stderr.startswith("zoo: error: ")
        assert in_process.stderr.count("\n") == 1 and "Traceback" not in subprocess_run.stderr


def test_inspect_a_missing_path_is_no_such_checkpoint_not_an_unknown_model(zoo: Zoo, tmp_path: Path):
    for target, message in [
        ("/nonexistent/ckpt-0", "/nonexistent/ckpt-0: no checkpoint there (/nonexistent is not a directory)"),
        (f"{tmp_path}/ckpt-0", f"{tmp_path}/ckpt-0: no checkpoint there (ckpt-0.index does not exist; "
                               f"{tmp_path} holds no *.index file)"),
        ("ckpt-0.index", "ckpt-0: no checkpoint there (ckpt-0.index does not exist; . holds no *.index file)"),
    ]:  # fmt: skip
        result = zoo.run("inspect", target)
        assert (result.returncode, result.stderr) == (6, f"zoo: error: {message}\n")
    unknown = zoo.run("inspect", "ssd_resnet50_fpn")
    assert unknown.returncode == 3 and "unknown model 'ssd_resnet50_fpn'" in unknown.stderr


def test_lock_output_writes_through_devices_dash_is_stdout_read_only_needs_force(zoo: Zoo, tmp_path: Path):
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a copy of /dev/null (we run as root)
    assert zoo.run("lock", MODEL, "-o", str(device)).returncode == 0
    assert stat.S_ISCHR(device.lstat().st_mode)
    dash = subprocess.run(zoo.command("lock", MODEL, "-o", "-"), cwd=tmp_path, env=zoo.env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dash.returncode == 0 and json.loads(dash.stdout)["models"][0]["name"] == MODEL
    assert not (tmp_path / "-").exists()
    lock = tmp_path / "zoo.lock"
    lock.write_text("keep me\n")
    lock.chmod(0o444)
    refused = zoo.run("lock", MODEL, "-o", str(lock))
    assert refused.returncode == 2 and lock.read_text() == "keep me\n"
    assert refused.stderr.strip() == f"zoo: error: {lock} is read-only; pass --force to replace it"
    assert zoo.run("lock", MODEL, "-o", str(lock), "--force").returncode == 0
    assert lock.read_text() == dash.stdout and lock.stat().st_mode & 0o777 == 0o444


def test_usage_and_registry_errors_are_one_line_with_their_codes(zoo: Zoo, tmp_path: Path):
    assert zoo.run("fetch").returncode == 2
    bad_env = zoo.run("fetch", MODEL, ZOO_OFFLINE="maybe")
    assert bad_env.returncode == 2 and bad_env.stderr.strip() == "zoo: error: ZOO_OFFLINE='maybe' is not a yes/no value (use 1 or 0)"
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": 1, "models": [{"name": "x", "family": "tf2-detection"}]}')
    result = zoo.run("list", "--registry", str(broken))
    assert result.returncode == 4
    assert result.stderr.strip() == (
        f"zoo: error: {broken}: models[0] (x): field 'url': "
        "must be an http(s):// or file:// URL or an absolute path, got None"
    )


def test_registry_files_from_the_environment_and_the_flag_are_layered(zoo: Zoo, tmp_path: Path):
    first, second, third = (tmp_path / f"{n}.json" for n in ("first", "second", "third"))
    for path in (first, second, third):
        model = {"name": f"team_{path.stem}", "family": "tf2-detection", "url": f"https://x.internal/{path.stem}.tar.gz"}
        path.write_text(json.dumps({"format": 1, "models": [model]}))
    env = {"ZOO_REGISTRY": f"{first}:{second}"}
    names = zoo.run("list", "--registry", str(third), "--json", **env).stdout
    assert {"team_first", "team_second", "team_third"} <= {json.loads(line)["name"] for line in names.splitlines()}


def test_cache_location_precedence(tmp_path: Path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert Settings.from_env(env=env).cache_dir == tmp_path / "xdg" / "zoo"
    env["ZOO_CACHE_DIR"] = str(tmp_path / "zoo-env")
    assert Settings.from_env(env=env).cache_dir == tmp_path / "zoo-env"
    assert Settings.from_env(cache_dir=tmp_path / "flag", env=env).cache_dir == tmp_path / "flag"
    assert Settings.from_env(env={"HOME": str(tmp_path)}).cache_dir.parts[-2:] == (".cache", "zoo")
    mirrors = Settings.from_env(mirrors=["http://flag"], env={"ZOO_MIRROR": "http://a, http://b"}).mirrors
    assert mirrors == ("http://flag", "http://a", "http://b")


def test_cache_dir_flag_and_xdg_are_used_by_the_command(zoo: Zoo, tmp_path: Path):
    env = clean_env(tmp_path)
    del env["ZOO_CACHE_DIR"]
    env["ZOO_REGISTRY"] = str(zoo.registry)
    xdg = subprocess.run([*zoo.command("fetch", MODEL)], env=env, capture_output=True, text=True)
    assert xdg.stdout.startswith(str(tmp_path / "xdg-cache" / "zoo" / "models"))
    flag = subprocess.run([*zoo.command("fetch", MODEL, "--cache-dir", str(tmp_path / "c"))], env=env, capture_output=True, text=True)
    assert flag.stdout.startswith(str(tmp_path / "c" / "models"))


def all_commands() -> list[tuple[str, object]]:
    root = typer.main.get_command(app)
    context = typer.Context(root)
    found = []
    for name in root.list_commands(context):
        command = root.get_command(context, name)
        if hasattr(command, "commands"):  # a group such as `zoo cache`
            found += [(f"{name} {sub}", subcommand) for sub, subcommand in command.commands.items()]
        else:
            found.append((name, command))
    return found


def test_readme_covers_every_command_and_option():
    for name, command in all_commands():
        assert f"zoo {name}" in README, f"README lacks `zoo {name}`"
        for parameter in command.params:
            for option in getattr(parameter, "opts", []):
                if option.startswith("--") and option != "--help":
                    assert option in README, f"README lacks {option} of `zoo {name}`"


def test_readme_documents_every_exit_code():
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", README, flags=re.MULTILINE)
    assert {name: int(code) for code, name in rows} == EXIT_CODES
