"""The `zoo` command: wiring only. Each command lives in the module of its
group and is imported when it runs (see ZooGroup), so a cached `zoo fetch`
starts in a few interpreter start-ups' time."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from zoo_cli.common import ZooGroup

# Command -> the zoo_cli module defining it, in the order `zoo --help` lists them.
COMMANDS = {
    "fetch": "models",
    "list": "models",
    "info": "models",
    "lock": "models",
    "verify": "cache",
    "cache": "cache",
    "config": "config",
    "check": "config",
    "train": "config",
    "inspect": "config",
    "doctor": "doctor",
    "mirror": "mirror",
    "bundle": "mirror",
}



class Zoo(ZooGroup):
    lazy = COMMANDS


app = typer.Typer(
    cls=Zoo,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from zoo import __version__

        typer.echo(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Fetch TensorFlow Object Detection API zoo checkpoints into a verified local cache."""


def main() -> None:
    """Console entry point: notes to stderr, then the app (ZooGroup maps errors to exit codes)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("zoo: %(message)s"))
    logger = logging.getLogger("zoo")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    app()
