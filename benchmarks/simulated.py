"""A simulated reasoning model with a known answer distribution, for measuring scaling strategies offline.

Every question gets a seeded difficulty: the probability that one sample answers correctly (easy 0.85, medium
0.6, hard 0.3) and a distribution over wrong answers (on hard questions the top wrong answer beats the correct
one, so voting cannot fix them). A reply is a reasoning trace that reveals its answer gradually: each word is
drawn from the answer's own small vocabulary with a probability that grows along the trace (else from a large
generic vocabulary), and the trace ends with "The answer is N." Streams yield the trace word by word, and a
stream closed early generates no more words, so `generated_tokens` measures what pruning saves.

Assumptions, stated because the results depend on them:

* Refinement: a sample whose prompt carries notes from earlier attempts (PDR, adaptive termination) adopts the
  answer most of the notes give with probability `copy_rate`, else answers afresh with accuracy raised by
  `refine_gain`.
* Selection prompts: the GenSelect judge names a correct candidate with probability `judge_accuracy` when one
  is present; the same-answer judge reads the answer vocabularies in both prefixes; a summary lists the
  candidates' answers with their counts.
* Log-probabilities: a correct sample's mean token log-probability is slightly higher than a wrong one's,
  with noise of the same size as the gap.

Token counts use `estimate_tokens` (about four characters per token), as the strategies estimate them.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from agentdag.messages import Completion, FinishReason, ModelRequest, ModelResponse, Usage
from agentdag.models.base import Model
from agentdag.scaling.best_of_n import JUDGE_INSTRUCTION
from agentdag.scaling.pdr import SUMMARY_INSTRUCTION
from agentdag.scaling.prune import SAME_ANSWER_INSTRUCTION
from agentdag.tokens import estimate_prompt_tokens, estimate_tokens

__all__ = ["SimulatedModel", "SimulatedQuestion"]

_GENERIC = tuple(
    f"{a}{b}"
    for a in ("so", "then", "we", "next", "now", "thus", "add", "take", "note", "check", "each", "total")
    for b in ("", "ly", "er", "ing", "ed", "s")
)
_ANSWER_WORDS = 8
_DIFFICULTY = ((0.4, 0.85), (0.35, 0.6), (0.25, 0.3))
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
        if rng.random() < min(0.97, self.accuracy + gain):
            return self.answer
        return rng.choices(self.wrong, weights=self.wrong_weights)[0]


class SimulatedModel(Model):
    """A stochastic reasoning model over known questions (see the module docstring for its assumptions).

    Args:
        questions: (question, correct answer) pairs; prompts are matched to them by their start.
        seed: seeds the difficulties and the unseeded samples.
        trace_tokens: the range of a full trace's length, in tokens.
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
        trace_tokens: tuple[int, int] = (150, 300),
        copy_rate: float = 0.5,
        refine_gain: float = 0.1,
        judge_accuracy: float = 0.7,
    ) -> None:
        setup = random.Random(f"difficulty|{seed}")
        self.questions: dict[str, SimulatedQuestion] = {}
        for question, answer in questions:
            accuracy = setup.choices([p for _, p in _DIFFICULTY], weights=[w for w, _ in _DIFFICULTY])[0]
            base = int(answer) if answer.lstrip("-").isdigit() else 0
            wrong = tuple(str(base + offset) for offset in setup.sample((-10, -2, -1, 1, 2, 3, 10, 12), 3))
            self.questions[question] = SimulatedQuestion(
                question=question, answer=answer, accuracy=accuracy, wrong=wrong, wrong_weights=(0.5, 0.3, 0.2)
            )
        self.rng = random.Random(f"samples|{seed}")
        self.trace_tokens = trace_tokens
        self.copy_rate = copy_rate
        self.refine_gain = refine_gain
        self.judge_accuracy = judge_accuracy
        self.generated_tokens = 0
        self.requests = 0

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
        """Yield the trace word by word; stopping early stops generation (counted in `generated_tokens`)."""
        completion = self._complete(request, 0)
        self.requests += 1
        words = completion.text.split(" ")
        sent = ""
        for position, word in enumerate(words):
            chunk = word if position == 0 else f" {word}"
            before = estimate_tokens(sent)
            sent += chunk
            self.generated_tokens += estimate_tokens(sent) - before
            yield chunk
            await anyio.lowlevel.checkpoint()
        prompt = estimate_prompt_tokens(request.messages)
        usage = Usage(calls=1, prompt_tokens=prompt, completion_tokens=estimate_tokens(sent))
        yield ModelResponse(completions=(completion,), usage=usage, model=self.name)

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
            text = self._solve(prompt, question, rng)
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

    def _solve(self, prompt: str, question: SimulatedQuestion, rng: random.Random) -> str:
        notes = _ANSWER_IS.findall(prompt) + [a for a, c in _AGREE.findall(prompt) for _ in range(int(c))]
        if notes and rng.random() < self.copy_rate:
            answer = Counter(notes).most_common(1)[0][0]
        else:
            answer = question.draw(rng, gain=self.refine_gain if notes else 0.0)
        return self._trace(question, answer, rng)

    def _trace(self, question: SimulatedQuestion, answer: str, rng: random.Random) -> str:
        vocabulary = _answer_vocabulary(question.question, answer)
        target = rng.randint(*self.trace_tokens) * 4  # characters
        words: list[str] = []
        length = 0
        while length < target:
            reveal = 0.3 + 0.6 * length / target
            word = rng.choice(vocabulary) if rng.random() < reveal else rng.choice(_GENERIC)
            words.append(word)
            length += len(word) + 1
        return " ".join(words) + f". The answer is {answer}."

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

    def _guess(self, text: str, question: SimulatedQuestion) -> str:
        words = Counter(text.split())
        scores = {
            answer: sum(words[word] for word in _answer_vocabulary(question.question, answer))
            for answer in (question.answer, *question.wrong)
        }
        return max(scores, key=lambda answer: scores[answer])

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
