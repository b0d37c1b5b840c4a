"""The three verdicts an evaluation can reach, and the exit status each gives a command that is
asked to fail on anything but PASS (``report --fail-on-fail``, ``verify --fail-on-fail``)."""

from __future__ import annotations

PASS, FAIL, INSUFFICIENT = "PASS", "FAIL", "INSUFFICIENT"
VERDICTS = (PASS, FAIL, INSUFFICIENT)
# 2 is taken by bad input and usage errors (click's own usage errors exit 2 too).
EXIT_STATUS = {PASS: 0, FAIL: 1, INSUFFICIENT: 3}
