"""Test-time scaling strategies: each is a model that wraps a model, so strategies stack and fit any role.

`create_strategy(config, model)` builds one from a `ScalingConfig` (the `scaling:` settings of task.yaml);
the classes can also be used directly. Every strategy returns a `ScaledResponse` whose `report` (see
`report_of`) gives its calls, tokens, B_seq, B_total, wall time and why it stopped.
"""

from agentdag.scaling.answers import (
    AnswerKind,
    AnswerRule,
    Vote,
    cluster_answers,
    create_answer_rule,
    extract_boxed,
    extract_number,
    extract_text,
    jaccard_similarity,
    ngram_cosine,
    normalize_text,
    same_number,
    same_text,
    semantic_entropy,
    vote,
)
from agentdag.scaling.base import Outcome, ScalingModel, Single
from agentdag.scaling.best_of_n import (
    BestOfN,
    Candidates,
    JudgeSelect,
    LogprobSelect,
    MajorityVote,
    Selector,
    Verifier,
    VerifierSelect,
    import_verifier,
)
from agentdag.scaling.budget import Budget, Ledger, Reservation, ScaledResponse, ScalingReport, report_of
from agentdag.scaling.config import (
    AdaptiveTerminationConfig,
    BestOfNConfig,
    PDRConfig,
    PruneConfig,
    ScalingConfig,
    SelfConsistencyConfig,
    SingleConfig,
    create_strategy,
    parse_scaling_config,
)
from agentdag.scaling.consistency import SelfConsistency, majority_probability, window_agrees
from agentdag.scaling.pdr import DistillOperator, ParallelDistillRefine, bound_tokens, rank_drafts
from agentdag.scaling.prune import LexicalJudge, ModelJudge, Prune, TraceJudge
from agentdag.scaling.termination import AdaptiveTermination, calibrate_threshold

__all__ = (
    "AdaptiveTermination",
    "AdaptiveTerminationConfig",
    "AnswerKind",
    "AnswerRule",
    "BestOfN",
    "BestOfNConfig",
    "Budget",
    "Candidates",
    "DistillOperator",
    "JudgeSelect",
    "Ledger",
    "LexicalJudge",
    "LogprobSelect",
    "MajorityVote",
    "ModelJudge",
    "Outcome",
    "PDRConfig",
    "ParallelDistillRefine",
    "Prune",
    "PruneConfig",
    "Reservation",
    "ScaledResponse",
    "ScalingConfig",
    "ScalingModel",
    "ScalingReport",
    "Selector",
    "SelfConsistency",
    "SelfConsistencyConfig",
    "Single",
    "SingleConfig",
    "TraceJudge",
    "Verifier",
    "VerifierSelect",
    "Vote",
    "bound_tokens",
    "calibrate_threshold",
    "cluster_answers",
    "create_answer_rule",
    "create_strategy",
    "extract_boxed",
    "extract_number",
    "extract_text",
    "import_verifier",
    "jaccard_similarity",
    "majority_probability",
    "ngram_cosine",
    "normalize_text",
    "parse_scaling_config",
    "rank_drafts",
    "report_of",
    "same_number",
    "same_text",
    "semantic_entropy",
    "vote",
    "window_agrees",
)
