"""Pair two runs' multiple-choice tasks example by example and judge each accuracy change.

Per task, the examples both runs answered are paired by id, and only if they are the same question
(context, choices, gold) drawn from the same file with the same seed and scored the same way. One
run may answer fewer examples than the other (a smaller ``limit``): its ids must then be exactly the
other's lowest-ranked ones under the seeded selection, so no run can hand-pick the examples it is
judged on, and ``verify`` can check that from the two reports alone.

Judged against the policy's ``accuracy`` section, a task's gate has three outcomes:

- insufficient: fewer paired examples than ``min_examples``, or an interval wider than
  ``max_interval_width_pp``: the evidence cannot tell, whatever the estimate;
- pass: the lower bound of the paired interval of (subject - baseline) is at least
  ``min_delta_pp``: any loss is, with the policy's confidence, within what the tier tolerates;
- fail: otherwise (enough evidence, and a loss beyond the tolerance cannot be ruled out).
"""

from __future__ import annotations

from typing import Any

from invarlock_provider.reporting.paired_accuracy import PairedTable, paired_accuracy
from invarlock_provider.reporting.policy import TierPolicy, gate
from invarlock_provider.reporting.run_report import RunReport
from invarlock_provider.task_file import selection_rank

CORRECTNESS = {"accuracy": "correct", "accuracy_norm": "correct_norm"}
# Recorded per task: which examples changed answer, both ways; the HTML shows the first few with text.
MAX_DISCORDANT_IDS = 1000
_SAME_QUESTION = ("context", "choices", "gold", "doc_hash")  # doc_hash: lm-eval imports only
_SAME_TASK = ("file_sha256", "seed", "scoring")


def tasks_of(report: RunReport) -> dict[str, dict[str, Any]]:
    return {block["name"]: block for block in report.data.get("tasks", [])}


def compare_tasks(
    subject: RunReport, baseline: RunReport, policy: TierPolicy
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per task (subject's order, then any the baseline alone has): the paired comparison and its gate."""
    ours, theirs = tasks_of(subject), tasks_of(baseline)
    names = list(ours) + [name for name in theirs if name not in ours]
    comparisons, gates = [], []
    for name in names:
        comparison = _compare(name, ours.get(name), theirs.get(name), policy.snapshot.get("accuracy"))
        comparisons.append(comparison)
        gates.append(_task_gate(comparison, policy.snapshot.get("accuracy")))
    return comparisons, gates


def _compare(
    name: str, subject: dict[str, Any] | None, baseline: dict[str, Any] | None, limits: dict[str, Any] | None
) -> dict[str, Any]:
    if subject is None or baseline is None:
        side = "subject" if baseline is None else "baseline"
        return {"name": name, "pairing": {"ok": False, "detail": f"only the {side} run has task {name!r}"}}
    problem = pairing_problem(subject, baseline)
    if problem:
        return {"name": name, "pairing": {"ok": False, "detail": problem}}
    by_id = {record["id"]: record for record in baseline["examples"]}
    shared = [record["id"] for record in subject["examples"] if record["id"] in by_id]
    ours = {record["id"]: record for record in subject["examples"]}
    metric = (limits or {}).get("metric", "accuracy")
    key = CORRECTNESS[metric]
    table = PairedTable.from_correctness([ours[i][key] for i in shared], [by_id[i][key] for i in shared])
    confidence = float((limits or {}).get("confidence", 0.95))
    paired = paired_accuracy(table, confidence)
    return {
        "name": name,
        "pairing": {"ok": True, "detail": f"{len(shared)} examples paired by id"},
        "metric": metric,
        "paired": paired.as_record(),
        "accuracy": {
            side: {m: sum(records[i][CORRECTNESS[m]] for i in shared) / len(shared) for m in CORRECTNESS}
            for side, records in (("subject", ours), ("baseline", by_id))
        },
        "discordant_ids": {
            "subject_only": [i for i in shared if ours[i][key] and not by_id[i][key]][:MAX_DISCORDANT_IDS],
            "baseline_only": [i for i in shared if by_id[i][key] and not ours[i][key]][:MAX_DISCORDANT_IDS],
        },
    }


def pairing_problem(subject: dict[str, Any], baseline: dict[str, Any]) -> str:
    """Why two runs' blocks of one task cannot be paired, or "" when they can."""
    for field in _SAME_TASK:
        if subject.get(field) != baseline.get(field):
            return f"{field} differs: subject {subject.get(field)!r}, baseline {baseline.get(field)!r}"
    ours = {record["id"]: record for record in subject["examples"]}
    theirs = {record["id"]: record for record in baseline["examples"]}
    if len(ours) == len(theirs) and set(ours) != set(theirs):
        only_ours, only_theirs = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        return (
            f"different examples: {len(only_ours)} ids only in the subject run (e.g. "
            f"{', '.join(map(repr, only_ours[:3]))}), {len(only_theirs)} only in the baseline run"
        )
    smaller, larger = (ours, theirs) if len(ours) <= len(theirs) else (theirs, ours)
    seed = subject.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return f"seed {seed!r} cannot reproduce the selection"
    expected = sorted(larger, key=lambda i: selection_rank(seed, i))[: len(smaller)]
    if set(expected) != set(smaller):
        strays = sorted(set(smaller) - set(expected))
        return (
            f"{len(strays)} example ids of the smaller run are not the first {len(smaller)} the seed selects "
            f"among the larger run's (e.g. {', '.join(map(repr, strays[:3]))})"
        )
    changed = [i for i in smaller if any(ours[i].get(f) != theirs[i].get(f) for f in _SAME_QUESTION)]
    if changed:
        return (
            f"{len(changed)} examples differ in context, choices, gold or document between the runs "
            f"(e.g. {', '.join(map(repr, changed[:3]))})"
        )
    return ""


def _task_gate(comparison: dict[str, Any], limits: dict[str, Any] | None) -> dict[str, Any]:
    name = f"task.{comparison['name']}"
    if not comparison["pairing"]["ok"]:
        return gate(name, None, None, "not evaluated", False, f"pairing failed: {comparison['pairing']['detail']}")
    paired = comparison["paired"]
    low, high = paired["interval"]
    lower_pp = 100 * low
    detail = (
        f"{comparison['metric']} {100 * paired['baseline_accuracy']:.1f}% -> {100 * paired['subject_accuracy']:.1f}%, "
        f"change {100 * paired['difference']:+.1f} pp ({100 * paired['confidence']:g}% CI {lower_pp:+.1f} to "
        f"{100 * high:+.1f}), McNemar p={paired['mcnemar_p']:.3g}, {paired['n']} examples"
    )
    if limits is None:
        return gate(name, None, None, "not evaluated", False, "the policy has no accuracy limits", insufficient=True)
    if paired["n"] < limits["min_examples"]:
        return gate(
            name,
            paired["n"],
            limits["min_examples"],
            ">=",
            False,
            f"too few examples to judge; {detail}",
            insufficient=True,
        )
    width_pp = 100 * (high - low)
    if width_pp > limits["max_interval_width_pp"]:
        return gate(
            name,
            width_pp,
            limits["max_interval_width_pp"],
            "<=",
            False,
            f"interval width in pp, too wide to judge; {detail}",
            insufficient=True,
        )
    passed = lower_pp >= limits["min_delta_pp"]
    return gate(name, lower_pp, limits["min_delta_pp"], ">=", passed, f"the interval's lower bound in pp; {detail}")
