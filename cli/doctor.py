"""`zoo doctor`: is this Python environment one the OD API trainer starts in?"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from zoo_cli.common import JsonOption, ZooTyper, emit

from zoo.errors import RejectedConfigError

app = ZooTyper()


@app.callback()
def _group() -> None:
    # Typer turns a one-command app into a bare command; zoo's lazy table takes a group's commands.
    pass


@app.command("doctor")
def doctor_command(
    python: Annotated[Optional[str], typer.Option("--python", metavar="PATH", help="Check this interpreter's environment instead of the one zoo runs in.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Find what in the Python environment stops the OD API trainer from starting, with the fix."""
    from zoo.doctor import doctor

    report = doctor(python)
    emit(as_json, report.to_dict(), report.render())
    if report.errors:
        # Exit 12, as `zoo check`: the trainer would fail, here before reading any config.
        raise RejectedConfigError(f"{report.env.python}: {len(report.errors)} error(s): the trainer cannot start")
