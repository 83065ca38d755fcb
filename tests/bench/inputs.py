"""The fetch benchmarks' inputs: zoo tarballs with real TensorFlow checkpoints,
built once under .bench/serve (reused while their size stays), and a registry
that points zoo at wherever they are served.

The tarballs are built in a child process (``python inputs.py SIZE MB TARGET``)
so TensorFlow never inflates the benchmark's own process (a child's peak RSS
starts from its parent's at exec on Linux).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
BENCH = ROOT / ".bench"
SERVE = BENCH / "serve"
SAMPLE = TESTS / "data" / "tf2_sample_configs"
sys.path.insert(0, str(TESTS))

from tarballs import sha256_of  # noqa: E402

MODELS = {
    "large": ("ssd_resnet50_v1_fpn_640x640_coco17_tpu-8", "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config"),
    "small": ("ssd_mobilenet_v2_320x320_coco17_tpu-8", "ssd_mobilenet_v2_320x320_coco17_tpu-8.config"),
}


@dataclass
class Model:
    name: str
    tarball: Path
    url: str
    config_url: str
    sha256: str

    @property
    def size_mb(self) -> float:
        return self.tarball.stat().st_size / 1e6


def prepare(sizes_mb: dict[str, float]) -> dict[str, Path]:
    """The tarball of each size name ("large", "small") with about that many MiB
    of float32 weights (random, so nearly incompressible, as real weights are)."""
    built = {}
    for size_name, size_mb in sizes_mb.items():
        name, config = MODELS[size_name]
        target = SERVE / "models" / f"{name}.tar.gz"
        stamp = target.with_suffix(".size")
        if not target.exists() or not stamp.exists() or float(stamp.read_text()) != size_mb:
            print(f"generating {target.name} (~{size_mb:g} MB of float32 weights) ...", flush=True)
            subprocess.run([sys.executable, __file__, size_name, str(size_mb), str(target)], check=True)
            stamp.write_text(str(size_mb))
        (SERVE / "configs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE / config, SERVE / "configs" / config)
        built[size_name] = target
    return built


def served_models(tarballs: dict[str, Path], base: str) -> dict[str, Model]:
    """The tarballs as served from ``base`` (the URL of SERVE)."""
    return {
        size: Model(
            MODELS[size][0], path, f"{base}/models/{path.name}", f"{base}/configs/{MODELS[size][1]}", sha256_of(path)
        )
        for size, path in tarballs.items()
    }


def write_registry(models: dict[str, Model], path: Path) -> Path:
    entries = [
        {
            "name": m.name,
            "family": "tf2-detection",
            "url": m.url,
            "checkpoint": "checkpoint/ckpt-0",
            "sha256": m.sha256,
            "size": m.tarball.stat().st_size,
            "sample_config": {"path": "configs/" + Path(m.config_url).name, "url": m.config_url},
        }
        for m in models.values()
    ]
    path.write_text(json.dumps({"format": 1, "models": entries}))
    return path


def generate(size_name: str, size_mb: float, target: Path) -> None:
    from tarballs import make_zoo_tarball

    name, config = MODELS[size_name]
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = make_zoo_tarball(BENCH / "build", name, config_text=(SAMPLE / config).read_text(), size_mb=size_mb)
    shutil.move(fresh, target)


if __name__ == "__main__":
    generate(sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]))
