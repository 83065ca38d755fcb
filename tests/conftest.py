"""Fixtures: a real upstream on 127.0.0.1 serving real zoo tarballs, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from httpserver import FileServer
from tarballs import make_zoo_tarball

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CONFIGS = ROOT / "tests" / "data" / "tf2_sample_configs"
MODEL = "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"
TARBALL_PATH = f"/models/object_detection/tf2/20200711/{MODEL}.tar.gz"
CONFIG_PATH = f"/tensorflow/models/0123abc/research/object_detection/configs/tf2/{MODEL}.config"
ZOO = Path(sys.executable).with_name("zoo")


@pytest.fixture(scope="session")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real zoo tarball (TF checkpoint, pipeline.config, saved_model) of about 2 MiB."""
    config = (SAMPLE_CONFIGS / f"{MODEL}.config").read_text()
    return make_zoo_tarball(tmp_path_factory.mktemp("tarballs"), MODEL, config_text=config, size_mb=2)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as running:
        yield running


@pytest.fixture
def upstream(server: FileServer, tarball: Path) -> FileServer:
    """The zoo's download host and GitHub's raw host, played by one local server."""
    server.add(TARBALL_PATH, tarball.read_bytes())
    server.add(CONFIG_PATH, (SAMPLE_CONFIGS / f"{MODEL}.config").read_bytes())
    return server


@dataclass
class Zoo:
    """Runs the installed `zoo` command against a private cache and registry."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        return Path(self.env["ZOO_CACHE_DIR"])

    @property
    def registry(self) -> Path:
        return self.home / "registry.json"

    def write_registry(self, models: list[dict], defaults: dict | None = None) -> Path:
        self.registry.write_text(json.dumps({"format": 1, "models": models, "defaults": defaults or {}}))
        return self.registry

    def command(self, *args: str) -> list[str]:
        return [str(ZOO), *args]

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env={**self.env, **env}, capture_output=True, text=True, timeout=timeout
        )

    def popen(self, *args: str, **kwargs) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
        )

    def leftovers(self) -> list[str]:
        """Files under the cache other than lock files and the cache's tag."""
        if not self.cache.exists():
            return []
        return sorted(
            str(p.relative_to(self.cache)) for p in self.cache.rglob("*")
            if p.is_file() and "locks" not in p.parts and p.name != "CACHEDIR.TAG"
        )  # fmt: skip

    def published(self) -> list[str]:
        models = self.cache / "models"
        return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


def clean_env(home: Path) -> dict[str, str]:
    """The caller's environment without zoo settings or proxies, with fast retries."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ZOO_") and key.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / "xdg-cache"),
        ZOO_CACHE_DIR=str(home / "cache"),
        ZOO_RETRIES="2",
        ZOO_BACKOFF="0.05",
        ZOO_TIMEOUT="10",
        COLUMNS="200",
    )
    return env


def model_entry(server: FileServer, **fields) -> dict:
    """A registry entry for the test model, served by ``server``."""
    return {
        "name": MODEL,
        "aliases": ["ssd_resnet50_v1_fpn"],
        "family": "tf2-detection",
        "url": server.url_for(TARBALL_PATH),
        "checkpoint": "checkpoint/ckpt-0",
        "sample_config": {"path": f"configs/tf2/{MODEL}.config", "url": server.url_for(CONFIG_PATH)},
        **fields,
    }


@pytest.fixture
def zoo(tmp_path: Path, upstream: FileServer) -> Zoo:
    """A zoo whose registry layers the test model (served by ``upstream``) over the built-in one."""
    runner = Zoo(tmp_path, clean_env(tmp_path))
    runner.write_registry([model_entry(upstream)])
    runner.env["ZOO_REGISTRY"] = str(runner.registry)
    return runner
