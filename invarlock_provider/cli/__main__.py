"""``python -m invarlock_provider.cli``: the same CLI, for subprocesses that know only the interpreter."""

from invarlock_provider.cli import main

main()
