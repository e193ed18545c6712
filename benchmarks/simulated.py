"""A simulated reasoning model calibrated to published statistics, for measuring scaling strategies offline.

Every question gets a seeded difficulty: the probability that one sample answers it correctly, and a
distribution over wrong answers. A reply is a reasoning trace of a sampled length that opens by restating the
question, then reasons, and ends with "The answer is N." A trace carries a little answer-correlated content
(words of its answer's own approach) from its start, and more of it towards its end, so it reveals its answer
gradually. Streams yield the trace three words (about four tokens) at a time, and a stream closed early
generates no more words, so `generated_tokens` measures what pruning saves. Nothing sleeps: a trace of
thousands of tokens streams in a millisecond or so, and latency is read from B_seq, not from the wall clock.

Calibration (`calibration.describe_calibration` lists each value with its source; the benchmark prints it):

* Per-sample accuracy: 0.896 on average over questions (70% of questions at 0.98, 20% at 0.8, 10% at 0.5),
  the GSM8K accuracy of DeepSeek-R1-Distill-Qwen-7B with a 16k-token budget in DEER (Yang et al. 2025,
  arXiv 2504.15895). The split across questions is an assumption.
* Answer agreement: that mix makes about 84% of same-question trace pairs reach the same answer, in line with
  DeepPrune's "over 80% of parallel traces yield identical final answers" (Tu et al. 2025, arXiv 2510.08483).
* Trace length: lognormal with a mean of 1,484 tokens, DEER's mean for the same model on GSM8K (2,047 for
  Qwen3-14B; 3,858 on MATH-500, 13,765 on AIME 2024). The spread (sigma 0.6) is an assumption: no
  per-sample spread is reported with those means.
* Prefix similarity: answer-correlated words are 8% of a trace's opening (`answer_share`), chosen so that the
  shipped lexical judge (word-set Jaccard of 64-token prefixes) separates same-answer from different-answer
  pairs with an AUROC near DeepPrune's 0.58 (sentence embeddings) to 0.66 (zero-shot LLM judge). The
  benchmark measures that AUROC on each run's own traces. How closely a trace restates the question
  (`restate_keep`, each question word kept with probability 0.7) sets the absolute similarity level, and so
  what a fixed similarity threshold prunes: that level is an assumption, not a published figure.

Assumptions without a published figure behind them, stated because results depend on them:

* Refinement has no built-in effect. A sample whose prompt carries notes from earlier attempts (PDR, adaptive
  termination) adopts the notes' most common answer with probability `copy_rate` (default 0: no published
  figure gives that rate), else answers afresh with accuracy raised by `refine_gain` (default 0).
* The GenSelect judge names a correct candidate with probability `judge_accuracy` (0.7) when one is present,
  else a random one; a summary lists the candidates' answers with their counts; the same-answer judge prompt
  (`ModelJudge`) is answered by comparing the answer words found in both prefixes.
* A correct sample's mean token log-probability is slightly higher than a wrong one's, with noise of the same
  size as the gap.

Token counts use `estimate_tokens` (about four characters per token), as the strategies estimate them.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from itertools import accumulate

import anyio.lowlevel

from agentdag.messages import Completion, FinishReason, ModelRequest, ModelResponse, Usage
from agentdag.models.base import Model
from agentdag.scaling.best_of_n import JUDGE_INSTRUCTION
from agentdag.scaling.pdr import SUMMARY_INSTRUCTION
from agentdag.scaling.prune import SAME_ANSWER_INSTRUCTION
from agentdag.tokens import estimate_prompt_tokens, estimate_tokens

__all__ = ["DIFFICULTY", "WRONG_WEIGHTS", "SimulatedModel", "SimulatedQuestion", "SimulatedTrace"]

DIFFICULTY = ((0.7, 0.98), (0.2, 0.8), (0.1, 0.5))
"""(share of questions, per-sample accuracy): mean accuracy 0.896, DEER's GSM8K figure."""
TRACE_TOKENS = 1484
TRACE_SPREAD = 0.6
ANSWER_SHARE = 0.08
RESTATE_KEEP = 0.7
_FINAL_SHARE = 0.5  # answer-correlated share of a trace's last words
_QUESTION_SHARE = 0.2  # share of the reasoning body that reuses the question's words
_ANSWER_WORDS = 12
WRONG_WEIGHTS = (0.5, 0.3, 0.2)
"""How a question's three wrong answers share the wrong samples (an assumption)."""
_OPENING_CHARS = 1024  # kept per trace: enough for any prefix judged up to 256 tokens
_KEY_CHARS = 48
_BLOCK = 32
_STREAM_WORDS = 3  # words per streamed chunk: about four tokens, a few more than one token per chunk
_COMMON_WORDS = (  # common reasoning words, most frequent first
    "so the we let me i need to first then wait check that is and of a it this now if each total per "
    "number find how many much step next means which gives right okay see since multiply add subtract "
    "divide times plus minus equals left over more less both together again actually hmm confirm makes "
    "sense calculate compute value part rest remaining after before start say think problem far got get "
    "would be are was has have with for in on at by from as but or not one two three half twice"
)
_GENERIC = tuple(_COMMON_WORDS.split())
_GENERIC_CUMULATIVE = tuple(accumulate(1 / (rank + 1) for rank in range(len(_GENERIC))))  # Zipf frequencies
_OPENERS = (
    ("okay", "so"),
    ("alright", "let", "me", "see"),
    ("let", "me", "think"),
    ("okay", "let's", "see"),
    ("so", "the", "problem", "says"),
    ("first", "i", "need", "to", "understand"),
)
_WORD = re.compile(r"\w+")
_ANSWER_IS = re.compile(r"answer is (-?\d+)")
_AGREE = re.compile(r"(-?\d+) \((\d+) of \d+\)")


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedQuestion:
    """A question's simulated answer distribution."""

    question: str
    answer: str
    accuracy: float
    wrong: tuple[str, ...]
    wrong_weights: tuple[float, ...]

    def draw(self, rng: random.Random, *, gain: float = 0.0) -> str:
        """One sample's answer."""
        if rng.random() < min(1.0, self.accuracy + gain):
            return self.answer
        return rng.choices(self.wrong, weights=self.wrong_weights)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedTrace:
    """A reasoning trace the model generated (whole, even if its stream was closed early).

    Attributes:
        question: the question it answers.
        answer: its final answer (None when `max_tokens` cut it before the answer).
        tokens: its full length.
        opening: its first characters (enough to find it by any judged prefix).
        refined: whether its prompt carried notes from earlier attempts.
    """

    question: str
    answer: str | None
    tokens: int
    opening: str
    refined: bool


class SimulatedModel(Model):
    """A stochastic reasoning model over known questions (see the module docstring for its calibration).

    Args:
        questions: (question, correct answer) pairs; prompts are matched to them by their start.
        seed: seeds the difficulties and the unseeded samples.
        trace_tokens: the mean length of a trace, in tokens.
        trace_spread: the sigma of the lognormal trace length.
        answer_share: the share of answer-correlated words in a trace's opening.
        restate_keep: how often a trace's restatement keeps each word of the question.
        copy_rate: how often a refining sample adopts the notes' most common answer.
        refine_gain: how much a refining sample's accuracy rises when it answers afresh.
        judge_accuracy: how often the GenSelect judge names a correct candidate when there is one.
    """

    name = "simulated"

    def __init__(
        self,
        questions: Sequence[tuple[str, str]],
        *,
        seed: int = 0,
        trace_tokens: int = TRACE_TOKENS,
        trace_spread: float = TRACE_SPREAD,
        answer_share: float = ANSWER_SHARE,
        restate_keep: float = RESTATE_KEEP,
        copy_rate: float = 0.0,
        refine_gain: float = 0.0,
        judge_accuracy: float = 0.7,
    ) -> None:
        if trace_tokens < 1 or trace_spread < 0 or not 0 <= answer_share <= _FINAL_SHARE:
            raise ValueError("trace_tokens must be positive, trace_spread non-negative, answer_share in [0, 0.5]")
        setup = random.Random(f"difficulty|{seed}")
        self.questions: dict[str, SimulatedQuestion] = {}
        for question, answer in questions:
            accuracy = setup.choices([p for _, p in DIFFICULTY], weights=[w for w, _ in DIFFICULTY])[0]
            base = int(answer) if answer.lstrip("-").isdigit() else 0
            wrong = tuple(str(base + offset) for offset in setup.sample((-10, -2, -1, 1, 2, 3, 10, 12), 3))
            self.questions[question] = SimulatedQuestion(
                question=question, answer=answer, accuracy=accuracy, wrong=wrong, wrong_weights=WRONG_WEIGHTS
            )
        self.rng = random.Random(f"samples|{seed}")
        self.trace_tokens = trace_tokens
        self.trace_spread = trace_spread
        self.answer_share = answer_share
        self.restate_keep = restate_keep
        self.copy_rate = copy_rate
        self.refine_gain = refine_gain
        self.judge_accuracy = judge_accuracy
        self.generated_tokens = 0
        self.requests = 0
        self._traces: dict[str, SimulatedTrace] = {}
        self._by_start: dict[str, list[SimulatedTrace]] = {}

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Reply in one piece: `settings.n` samples."""
        completions = [self._complete(request, index) for index in range(max(1, request.settings.n))]
        await anyio.lowlevel.checkpoint()
        prompt = estimate_prompt_tokens(request.messages)
        tokens = sum(estimate_tokens(completion.text) for completion in completions)
        self.generated_tokens += tokens
        self.requests += 1
        return ModelResponse(
            completions=tuple(completions),
            usage=Usage(calls=1, prompt_tokens=prompt, completion_tokens=tokens),
            model=self.name,
        )

    async def stream(self, request: ModelRequest) -> AsyncGenerator[str | ModelResponse, None]:
        """Yield the trace a few words at a time; stopping early stops generation (counted in `generated_tokens`)."""
        completion = self._complete(request, 0)
        self.requests += 1
        words = completion.text.split(" ")
        length = 0
        for start in range(0, len(words), _STREAM_WORDS):
            chunk = ("" if start == 0 else " ") + " ".join(words[start : start + _STREAM_WORDS])
            self.generated_tokens += (length + len(chunk) + 3) // 4 - (length + 3) // 4  # as estimate_tokens counts
            length += len(chunk)
            yield chunk
            await anyio.lowlevel.checkpoint()
        prompt = estimate_prompt_tokens(request.messages)
        usage = Usage(calls=1, prompt_tokens=prompt, completion_tokens=estimate_tokens(completion.text))
        yield ModelResponse(completions=(completion,), usage=usage, model=self.name)

    # -- what the benchmark reads back --------------------------------------------------------------------

    def traces(self) -> list[SimulatedTrace]:
        """Every distinct trace generated so far, in order."""
        return list(self._traces.values())

    def find_trace(self, prefix: str) -> SimulatedTrace | None:
        """The trace that starts with `prefix` (a judged prefix of a streamed trace), if this model made it."""
        for trace in self._by_start.get(prefix[:_KEY_CHARS], ()):
            shorter = min(len(prefix), len(trace.opening))
            if trace.opening[:shorter] == prefix[:shorter]:
                return trace
        return None

    # -- replies ------------------------------------------------------------------------------------------

    def _complete(self, request: ModelRequest, index: int) -> Completion:
        prompt = "\n".join(message.content for message in request.messages)
        settings = request.settings
        if settings.seed is not None or settings.temperature == 0:
            rng = random.Random(f"{settings.seed}|{index}|{prompt}")
        else:
            rng = self.rng
        question = self._find_question(prompt)
        if JUDGE_INSTRUCTION in prompt:
            text = self._judge(prompt, question, rng)
        elif SAME_ANSWER_INSTRUCTION in prompt:
            text = self._same_answer(prompt, question)
        elif SUMMARY_INSTRUCTION in prompt:
            text = self._summary(prompt)
        elif question is None:
            text = "I do not know. The answer is 0."
        else:
            text = self._solve(prompt, question, rng, settings.max_tokens)
        finish: FinishReason = "stop"
        if settings.max_tokens is not None and estimate_tokens(text) > settings.max_tokens:
            text, finish = text[: 4 * settings.max_tokens], "length"
        logprobs = self._logprobs(text, question, rng) if settings.logprobs else None
        return Completion(text=text, finish_reason=finish, logprobs=logprobs)

    def _find_question(self, prompt: str) -> SimulatedQuestion | None:
        for question, simulated in self.questions.items():
            if question in prompt:
                return simulated
        return None

    def _solve(self, prompt: str, question: SimulatedQuestion, rng: random.Random, max_tokens: int | None) -> str:
        notes = _ANSWER_IS.findall(prompt) + [a for a, c in _AGREE.findall(prompt) for _ in range(int(c))]
        if notes and rng.random() < self.copy_rate:
            answer = Counter(notes).most_common(1)[0][0]
        else:
            answer = question.draw(rng, gain=self.refine_gain if notes else 0.0)
        text = self._trace(question, answer, rng)
        cut = max_tokens is not None and estimate_tokens(text) > max_tokens
        self._record(question.question, None if cut else answer, text, refined=bool(notes))
        return text

    def _record(self, question: str, answer: str | None, text: str, *, refined: bool) -> None:
        opening = text[:_OPENING_CHARS]
        if opening in self._traces:
            return
        trace = SimulatedTrace(
            question=question, answer=answer, tokens=estimate_tokens(text), opening=opening, refined=refined
        )
        self._traces[opening] = trace
        self._by_start.setdefault(opening[:_KEY_CHARS], []).append(trace)

    def _trace(self, question: SimulatedQuestion, answer: str, rng: random.Random) -> str:
        mu = math.log(self.trace_tokens) - self.trace_spread**2 / 2  # so that the mean is `trace_tokens`
        target = 4 * max(16, round(rng.lognormvariate(mu, self.trace_spread)))  # characters
        own = _answer_vocabulary(question.question, answer)
        asked = _WORD.findall(question.question.lower()) or ["it"]
        words = self._restate(asked, own, rng)
        length = sum(len(word) + 1 for word in words)
        while length < target:
            share = self.answer_share + (_FINAL_SHARE - self.answer_share) * length / target
            block = zip(  # drawn a block at a time: one draw per word of each kind, used or not
                [rng.random() for _ in range(_BLOCK)],
                rng.choices(own, k=_BLOCK),
                rng.choices(asked, k=_BLOCK),
                rng.choices(_GENERIC, cum_weights=_GENERIC_CUMULATIVE, k=_BLOCK),
                strict=True,
            )
            for kind, answering, restating, filler in block:
                word = answering if kind < share else restating if kind < share + _QUESTION_SHARE else filler
                words.append(word)
                length += len(word) + 1
        return " ".join(words) + f". The answer is {answer}."

    def _restate(self, asked: list[str], own: list[str], rng: random.Random) -> list[str]:
        """An opener, then the question's words in order (each kept with `restate_keep`, else maybe paraphrased)."""
        words = list(rng.choice(_OPENERS))
        for word in asked:
            if rng.random() < self.answer_share:
                words.append(rng.choice(own))
            if rng.random() < self.restate_keep:
                words.append(word)
            elif rng.random() < 0.5:
                words.append(rng.choices(_GENERIC, cum_weights=_GENERIC_CUMULATIVE)[0])
        return words

    def _judge(self, prompt: str, question: SimulatedQuestion | None, rng: random.Random) -> str:
        candidates = re.split(r"Candidate \d+:\n", prompt)[1:]
        answers = [found[-1] if (found := _ANSWER_IS.findall(text)) else None for text in candidates]
        correct = [index for index, answer in enumerate(answers) if question and answer == question.answer]
        if correct and rng.random() < self.judge_accuracy:
            return f"Best: {rng.choice(correct) + 1}"
        return f"Best: {rng.randrange(max(1, len(candidates))) + 1}"

    def _same_answer(self, prompt: str, question: SimulatedQuestion | None) -> str:
        if question is None:
            return "no"
        first, _, second = prompt.partition("Solution B:")
        guesses = [self._guess(text, question) for text in (first.partition("Solution A:")[2], second)]
        return "yes" if guesses[0] == guesses[1] else "no"

    def _guess(self, text: str, question: SimulatedQuestion) -> str | None:
        words = Counter(text.split())
        scores = {
            answer: sum(words[word] for word in _answer_vocabulary(question.question, answer))
            for answer in (question.answer, *question.wrong)
        }
        best = max(scores.values())
        return None if best == 0 else next(answer for answer, score in scores.items() if score == best)

    def _summary(self, prompt: str) -> str:
        candidates = re.split(r"Candidate \d+:\n", prompt)[1:]
        answers = [found[-1] for text in candidates if (found := _ANSWER_IS.findall(text))]
        counts = Counter(answers).most_common()
        if not counts:
            return "The candidates reach no answer; the problem remains open."
        listed = "; ".join(f"{answer} ({count} of {len(candidates)})" for answer, count in counts)
        return f"Candidates agree and differ as follows: {listed}. Recheck the arithmetic of the minority."

    def _logprobs(self, text: str, question: SimulatedQuestion | None, rng: random.Random) -> tuple[float, ...]:
        found = _ANSWER_IS.findall(text)
        right = question is not None and bool(found) and found[-1] == question.answer
        mean = (-0.78 if right else -0.82) + rng.gauss(0, 0.1)
        return tuple(min(0.0, mean + rng.gauss(0, 0.3)) for _ in range(estimate_tokens(text)))


def _answer_vocabulary(question: str, answer: str) -> list[str]:
    rng = random.Random(f"vocabulary|{question}|{answer}")
    letters = "bcdfghklmnprstvz"
    return ["".join(rng.choice(letters) + rng.choice("aeiou") for _ in range(3)) for _ in range(_ANSWER_WORDS)]
