"""Scaling strategies on the real embedded model: the strategy machinery works end to end (not accuracy)."""

from __future__ import annotations

import pytest
from support import require_embedded_model

from agentdag.messages import Message, ModelRequest, ModelSettings
from agentdag.models import ModelConfig, open_model
from agentdag.scaling import LexicalJudge, Prune, ScaledResponse, SelfConsistency

require_embedded_model()

pytestmark = [pytest.mark.embedded]


@pytest.mark.asyncio
async def test_self_consistency_and_pruning_on_the_embedded_model() -> None:
    request = ModelRequest(
        messages=(Message(role="user", content="What is 7 + 5? End with: The answer is <number>."),),
        settings=ModelSettings(max_tokens=48, seed=1),
    )
    async with open_model(ModelConfig()) as model:
        consistency = await SelfConsistency(model, rule="window", window=2, max_n=4).request(request)
        pruned = await Prune(model, n=3, prefix_tokens=8, judge=LexicalJudge(threshold=0.0)).request(request)
    assert isinstance(consistency, ScaledResponse)
    assert 2 <= consistency.report.samples <= 4
    assert consistency.report.calls == consistency.report.samples
    assert consistency.usage.completion_tokens > 0
    assert isinstance(pruned, ScaledResponse)
    # A judge that calls every pair redundant stops all but the first trace once they pass the prefix.
    assert pruned.report.samples == 3
    assert 1 <= pruned.report.pruned <= 2
    assert pruned.text
