"""ModelConfig: parsing, validation, environment fallbacks; open_model for OpenAI-compatible servers."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from agentdag.errors import ModelError
from agentdag.models import EmbeddedServer, ModelConfig, OpenAIModel, open_model
from agentdag.models.embedded import default_threads

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENTDAG_BASE_URL", "AGENTDAG_MODEL", "AGENTDAG_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_to_the_embedded_server() -> None:
    config = ModelConfig()
    assert config.provider == "embedded"
    assert (config.slots, config.ctx_per_slot, config.threads) == (4, 4096, None)
    assert config.effective_provider() == "embedded"


@pytest.mark.parametrize(("usable", "threads"), [({0}, 1), ({0, 1}, 1), ({0, 1, 2}, 1), (set(range(8)), 4)])
def test_the_embedded_server_defaults_to_half_the_cores_the_process_may_use(
    monkeypatch: pytest.MonkeyPatch, usable: set[int], threads: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: usable, raising=False)
    assert default_threads() == threads
    assert EmbeddedServer().threads == threads
    assert EmbeddedServer(threads=3).threads == 3


def test_base_url_implies_openai() -> None:
    config = ModelConfig.model_validate({"base_url": "http://127.0.0.1:8000/v1", "model": "qwen"})
    assert config.provider == "openai"


def test_openai_options_are_refused_for_the_embedded_provider() -> None:
    with pytest.raises(ValidationError, match="only apply to provider 'openai'"):
        ModelConfig.model_validate({"provider": "embedded", "base_url": "http://127.0.0.1:8000/v1"})


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ModelConfig.model_validate({"provider": "openai", "temprature": 0.2})


def test_api_key_is_secret() -> None:
    config = ModelConfig(provider="openai", api_key="sk-very-secret")  # type: ignore[arg-type]
    assert "sk-very-secret" not in repr(config)


def test_agentdag_base_url_switches_an_unset_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDAG_BASE_URL", "http://127.0.0.1:9/v1")
    assert ModelConfig().effective_provider() == "openai"
    assert ModelConfig(provider="embedded").effective_provider() == "embedded"


async def test_open_model_takes_url_model_and_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTDAG_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("AGENTDAG_MODEL", "served-model")
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai-env")
    async with open_model(ModelConfig(provider="openai")) as model:
        assert isinstance(model, OpenAIModel)
        assert (model.base_url, model.name) == ("http://127.0.0.1:9/v1", "served-model")
        assert model.server == "openai-compatible server at http://127.0.0.1:9/v1"


async def test_open_model_without_a_model_name_asks_the_server() -> None:
    config = ModelConfig(provider="openai", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2)
    with pytest.raises(ModelError, match="cannot connect"):
        async with open_model(config):
            pass
