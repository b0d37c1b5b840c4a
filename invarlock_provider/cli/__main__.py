"""``python -m invarlock_provider.cli``: the same CLI, for subprocesses that know only the interpreter."""

from invarlock_provider.cli import console_main

console_main()
