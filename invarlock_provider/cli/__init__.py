"""The ``invarlock`` command: one module per subcommand, imported only when that command runs.

Each subcommand is also what an Airflow operator does, so every DAG step can be replayed by hand.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
from typing import Any

import click

from invarlock_provider import __version__

_COMMANDS = {
    "run": "invarlock_provider.cli.run:run_command",
    "arrivals": "invarlock_provider.cli.arrivals:arrivals_command",
    "report": "invarlock_provider.cli.report:report_command",
    "verify": "invarlock_provider.cli.verify:verify_command",
    "archive": "invarlock_provider.cli.archive:archive_command",
    "fetch": "invarlock_provider.cli.fetch:fetch_command",
    "ls": "invarlock_provider.cli.ls:ls_command",
    "history": "invarlock_provider.cli.history:history_command",
    "prune": "invarlock_provider.cli.prune:prune_command",
    "doctor": "invarlock_provider.cli.doctor:doctor_command",
    "keygen": "invarlock_provider.cli.keygen:keygen_command",
    "waive": "invarlock_provider.cli.waive:waive_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="invarlock")
def main() -> None:
    """Evaluate causal language models, pair runs into reports, and archive the evidence.

    \b
    Environment:
      INVARLOCK_ALLOW_NETWORK=1   allow model/dataset hub downloads (off by default)
    """


def console_main() -> None:
    """The ``invarlock`` console script and ``python -m invarlock_provider.cli``.

    Once torch and transformers are loaded, the interpreter's own teardown of their modules takes
    1.6 s on a 2-core machine, longer than loading the embedded model: every Airflow task pays it.
    So after the command has finished, the atexit handlers run (logging flush, temp cleanup) and
    the process exits without that teardown. In-process callers (CliRunner, tests) use ``main``.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if "torch" not in sys.modules:
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
