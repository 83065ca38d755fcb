"""The main job end to end, offline: mirror a zoo model, serve it, fetch it.

Builds a tarball in the zoo's real layout (a real TensorFlow checkpoint,
pipeline.config, saved_model/) for `ssd_resnet50_v1_fpn`, lays it out as a
mirror (`<host>/<path>` of its upstream URL, as `wget -x` does) with its
sample config, serves the mirror on 127.0.0.1, and runs `zoo fetch` through
ZOO_MIRROR, then again from the cache, then `zoo verify`.

    .venv/bin/python tests/demo.py [--size-mb 60] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpserver import FileServer  # noqa: E402
from tarballs import make_zoo_tarball  # noqa: E402
from zoo import load_registry  # noqa: E402
from zoo.sources import mirror_url  # noqa: E402

SAMPLE_CONFIGS = Path(__file__).resolve().parent / "data" / "tf2_sample_configs"


def build_mirror(root: Path, size_mb: float) -> str:
    model = load_registry().resolve("ssd_resnet50_v1_fpn")
    config = SAMPLE_CONFIGS / Path(model.sample_config.path).name
    tarball = make_zoo_tarball(root.parent / "build", model.name, config_text=config.read_text(), size_mb=size_mb)
    for url, source in ((model.url, tarball), (model.sample_config.url, config)):
        target = Path(mirror_url(str(root), url))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return model.name


def run(env: dict[str, str], *args: str) -> None:
    print(f"\n$ zoo {' '.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).with_name("zoo")), *args], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=60, help="checkpoint size (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zoo-demo-"))
    try:
        print(f"building a {options.size_mb:g} MB zoo tarball and its mirror in {work} ...", flush=True)
        name = build_mirror(work / "mirror", options.size_mb)
        with FileServer(root=work / "mirror") as server:
            env = {**os.environ, "ZOO_MIRROR": server.url, "ZOO_CACHE_DIR": str(work / "cache")}
            print(f"serving the mirror at {server.url}; ZOO_MIRROR={server.url}")
            run(env, "fetch", "ssd_resnet50_v1_fpn")
            run(env, "fetch", "ssd_resnet50_v1_fpn", "--json")
            run(env, "verify", name)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
