"""What ``zoo inspect`` shows of a checkpoint."""

from __future__ import annotations

from collections import Counter
from typing import Any

from zoo.checkpoint.reader import Checkpoint


# -- inspection ------------------------------------------------------------------------


def summarize(checkpoint: Checkpoint, filter_prefix: str | None = None) -> dict[str, Any]:
    """What ``zoo inspect`` shows, JSON-ready; with ``filter_prefix``, the variables whose names start with it."""
    summary: dict[str, Any] = {
        "prefix": str(checkpoint.prefix),
        "format": checkpoint.format,
        "root_objects": checkpoint.root_objects(),
        "model_children": checkpoint.model_children(),
        "tensors": len(checkpoint.entries),
        "parameters": checkpoint.num_parameters,
        "bytes": checkpoint.num_bytes,
        "shards": checkpoint.header.num_shards,
        "dtypes": dict(sorted(Counter(entry.dtype for entry in checkpoint.entries).items())),
    }
    if filter_prefix is not None:
        summary["variables"] = [
            {"name": entry.name, "dtype": entry.dtype, "shape": list(entry.shape)}
            for entry in checkpoint.entries
            if entry.name.startswith(filter_prefix)
        ]
    return summary
