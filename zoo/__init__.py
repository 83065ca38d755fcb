"""zoo: fetch TensorFlow Object Detection API zoo checkpoints into a verified cache."""

__version__ = "0.1.0"

from zoo import bundle, lockfile, serve  # noqa: E402
from zoo.cache import Cache, Entry  # noqa: E402
from zoo.catalog import Info, Listing, list_models, model_info, select_models  # noqa: E402
from zoo.errors import ZooError  # noqa: E402
from zoo.fetch import FetchResult, fetch, fetch_many  # noqa: E402
from zoo.mirror import build_mirror, verify_mirror  # noqa: E402
from zoo.registry import Model, Registry, load_registry  # noqa: E402
from zoo.settings import Settings  # noqa: E402
from zoo.verify import VerifyResult, verify_cached  # noqa: E402

__all__ = [
    "Cache",
    "Entry",
    "FetchResult",
    "Info",
    "Listing",
    "Model",
    "Registry",
    "Settings",
    "VerifyResult",
    "ZooError",
    "__version__",
    "build_mirror",
    "bundle",
    "fetch",
    "fetch_many",
    "lockfile",
    "select_models",
    "serve",
    "verify_mirror",
    "list_models",
    "load_registry",
    "model_info",
    "verify_cached",
]
