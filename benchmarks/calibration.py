"""The simulator's calibration, stated and measured: the table of sourced parameters, and the statistics of a
run's own traces (per-sample accuracy, answer agreement, lengths) with the AUROC of each same-answer judge on
their prefixes.

The judges are measured on pairs of distinct traces of the same question (at most `per_question` traces per
question, those first generated, whose prompts carried no notes), labelled by whether the two final answers
agree: the pairs the pruning strategy compares. Both judges score the same pairs.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

from agentdag.scaling.answers import jaccard_similarity, ngram_cosine
from agentdag.scaling.prune import LexicalJudge

from .judging import SimulatedJudge, auroc
from .simulated import DIFFICULTY, WRONG_WEIGHTS, SimulatedModel, SimulatedTrace

__all__ = ["Calibration", "describe_calibration", "measure_traces"]

_DEER = "DEER (Yang et al. 2025, arXiv 2504.15895), DeepSeek-R1-Distill-Qwen-7B on GSM8K, 16k-token budget"
_DEEPPRUNE = "DeepPrune (Tu et al. 2025, arXiv 2510.08483)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """One simulator setting, its value, and the published statistic (or the assumption) it is set from."""

    parameter: str
    value: float | str
    source: str


def describe_calibration(model: SimulatedModel, *, judge: SimulatedJudge | None = None) -> list[dict[str, Any]]:
    """The simulator's (and the simulated judge's) settings with their sources, JSON-able."""
    mix = ", ".join(f"{share:.0%} of questions at {accuracy}" for share, accuracy in DIFFICULTY)
    collide = sum(weight * weight for weight in WRONG_WEIGHTS)
    agreement = sum(share * (p * p + (1 - p) ** 2 * collide) for share, p in DIFFICULTY)
    items = [
        Calibration(
            parameter="per_sample_accuracy",
            value=round(sum(share * accuracy for share, accuracy in DIFFICULTY), 3),
            source=f"{_DEER}: 89.6%; the mix across questions ({mix}) is an assumption",
        ),
        Calibration(
            parameter="answer_agreement",
            value=round(agreement, 3),
            source=f"{_DEEPPRUNE}: over 80% of parallel traces reach the same final answer (the value: the "
            "expected share of same-question trace pairs that agree)",
        ),
        Calibration(
            parameter="trace_tokens",
            value=model.trace_tokens,
            source=f"{_DEER}: mean 1,484 tokens (Qwen3-14B 2,047; MATH-500 3,858; AIME 2024 13,765)",
        ),
        Calibration(
            parameter="trace_spread",
            value=model.trace_spread,
            source="assumption: the lognormal sigma of trace lengths; no per-sample spread is reported with "
            "those means",
        ),
        Calibration(
            parameter="answer_share",
            value=model.answer_share,
            source=f"set so the shipped lexical judge's AUROC on 64-token prefixes lands near {_DEEPPRUNE}'s "
            "0.58 (sentence-embedding similarity) to 0.66 (zero-shot LLM judge); measured on every run",
        ),
        Calibration(
            parameter="restate_keep",
            value=model.restate_keep,
            source="assumption: traces open by restating the question; this sets the absolute similarity of "
            "prefixes, and so what a fixed similarity threshold prunes",
        ),
        Calibration(
            parameter="copy_rate",
            value=model.copy_rate,
            source="0 unless set: no published figure gives how often a refining sample adopts the majority "
            "answer of its notes",
        ),
        Calibration(
            parameter="refine_gain",
            value=model.refine_gain,
            source="0 unless set: no built-in refinement gain (PDR reports o3-mini on AIME 77.5% to 86.5% at "
            "matched B_seq; nothing here models why, so PDR and SEAT are measured for cost only)",
        ),
        Calibration(
            parameter="judge_accuracy",
            value=model.judge_accuracy,
            source="assumption: how often the GenSelect judge names a correct candidate when one is present",
        ),
    ]
    if judge is not None:
        items.append(
            Calibration(
                parameter="simulated_judge_auroc",
                value=judge.target_auroc,
                source=f"{_DEEPPRUNE} v1: the trained judge's AUROC (v2: 0.7072 on unseen reasoning models); "
                f"binormal scores with d' = {judge.separation:.3f}, threshold {judge.threshold:.3f} (d'/2, the "
                "equal-prior Bayes cut)",
            )
        )
    return [asdict(item) for item in items]


def measure_traces(
    model: SimulatedModel,
    *,
    lexical: LexicalJudge,
    judge: SimulatedJudge,
    prefix_tokens: int,
    questions: Collection[str] | None = None,
    per_question: int = 24,
) -> dict[str, Any]:
    """Statistics of the model's fresh traces of `questions` (default: all), and both judges' AUROCs on their pairs.

    Each question contributes its first k fresh traces, k the same for every question (the fewest any question
    has, at most `per_question`): a strategy that samples more where answers disagree would otherwise weight the
    statistics towards hard questions. The first k samples of a question are independent draws whatever
    stopping rule drew them.
    """
    asked_about = model.questions if questions is None else questions
    fresh: dict[str, list[SimulatedTrace]] = {question: [] for question in asked_about}
    for trace in model.traces():
        if not trace.refined and trace.question in fresh:
            fresh[trace.question].append(trace)
    asked = [group for group in fresh.values() if group]
    k = min(per_question, *(len(group) for group in asked)) if asked else 0
    traces = [trace for group in asked for trace in group[:k]]
    if not traces:
        return {"traces": {"count": 0}, "judges": None}
    correct = sum(trace.answer == model.questions[trace.question].answer for trace in traces)
    lengths = sorted(trace.tokens for trace in traces)
    chars = 4 * prefix_tokens  # as Prune cuts prefixes
    similar = jaccard_similarity if lexical.measure == "jaccard" else ngram_cosine
    pairs: list[tuple[bool, float, float]] = []
    for group in asked:
        answered = [trace for trace in group[:k] if trace.answer is not None]
        for first, second in combinations(answered, 2):
            a, b = first.opening[:chars], second.opening[:chars]
            same, score = judge.score(a, b)
            pairs.append((same, similar(a, b), score))
    return {
        "traces": {
            "count": len(traces),
            "per_question": k,
            "per_sample_accuracy": round(correct / len(traces), 4),
            "answer_agreement": round(sum(same for same, _, _ in pairs) / len(pairs), 4) if pairs else None,
            "tokens_mean": round(statistics.fmean(lengths)),
            "tokens_median": lengths[len(lengths) // 2],
            "tokens_p10": lengths[len(lengths) // 10],
            "tokens_p90": lengths[(9 * len(lengths)) // 10],
        },
        "judges": {
            "prefix_tokens": prefix_tokens,
            "pairs": len(pairs),
            "lexical": _rates(pairs, 1, lexical.threshold) | {"measure": lexical.measure},
            "simulated": _rates(pairs, 2, judge.threshold) | {"target_auroc": judge.target_auroc},
        },
    }


def _rates(pairs: Sequence[tuple[bool, float, float]], column: int, threshold: float) -> dict[str, Any]:
    same = [pair[column] for pair in pairs if pair[0]]
    different = [pair[column] for pair in pairs if not pair[0]]
    measured = auroc(same, different)
    return {
        "auroc": None if measured is None else round(measured, 3),
        "threshold": round(threshold, 3),
        "same_judged_same": round(sum(v >= threshold for v in same) / len(same), 3) if same else None,
        "different_judged_same": round(sum(v >= threshold for v in different) / len(different), 3)
        if different
        else None,
    }
