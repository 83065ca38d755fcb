"""zoo: fetch TensorFlow Object Detection API zoo checkpoints into a verified cache."""

__version__ = "0.1.0"

from zoo.cache import Cache, Entry  # noqa: E402
from zoo.catalog import Info, Listing, list_models, model_info  # noqa: E402
from zoo.errors import ZooError  # noqa: E402
from zoo.fetch import FetchResult, fetch  # noqa: E402
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
    "fetch",
    "list_models",
    "load_registry",
    "model_info",
    "verify_cached",
]
