"""zoo: fetch TensorFlow Object Detection API zoo checkpoints into a verified cache.

The public API is imported lazily, so ``import zoo.checkpoint`` (a
millisecond checkpoint listing) does not pay for the download stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported eagerly: ``zoo.fetch`` names both a module and its function, and
# the import system binds the module to the package attribute the first time
# anything imports zoo.fetch; binding the function here, after that, keeps
# ``zoo.fetch(...)`` callable however the process got here. zoo.fetch imports
# only the light core (no requests, tarfile or tqdm).
from zoo.fetch import FetchResult, fetch, fetch_many  # noqa: E402, F401 (exported)
# The same for zoo.stage, which imports no more than zoo.fetch does (fsspec,
# its backends and crc32c only when a model is staged).
from zoo.stage import StageResult, stage  # noqa: E402, F401 (exported)

_EXPORTS = {
    "Cache": "zoo.cache",
    "Entry": "zoo.cache",
    "Info": "zoo.catalog",
    "Listing": "zoo.catalog",
    "inspect_checkpoint": "zoo.catalog",
    "list_models": "zoo.catalog",
    "model_info": "zoo.catalog",
    "select_models": "zoo.catalog",
    "ZooError": "zoo.errors",
    "build_mirror": "zoo.mirror.build",
    "verify_mirror": "zoo.mirror.build",
    "Model": "zoo.registry",
    "Registry": "zoo.registry",
    "load_registry": "zoo.registry",
    "Settings": "zoo.settings",
    "VerifyResult": "zoo.verify",
    "verify_cached": "zoo.verify",
}
_MODULES = {"checkpoint", "config", "errors", "lockfile", "mirror"}

__all__ = sorted([*_EXPORTS, *_MODULES, "FetchResult", "fetch", "fetch_many", "StageResult", "stage", "__version__"])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"zoo.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


if TYPE_CHECKING:
    from zoo import checkpoint, config, errors, lockfile, mirror  # noqa: F401
    from zoo.cache import Cache, Entry  # noqa: F401
    from zoo.catalog import Info, Listing, inspect_checkpoint, list_models, model_info, select_models  # noqa: F401
    from zoo.errors import ZooError  # noqa: F401
    from zoo.mirror.build import build_mirror, verify_mirror  # noqa: F401
    from zoo.registry import Model, Registry, load_registry  # noqa: F401
    from zoo.settings import Settings  # noqa: F401
    from zoo.verify import VerifyResult, verify_cached  # noqa: F401
