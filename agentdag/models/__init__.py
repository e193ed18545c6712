"""Models: the protocol, an OpenAI-compatible client, the embedded llama.cpp server, test doubles."""

from agentdag.models.base import Model, WrapperModel
from agentdag.models.cassette import CassetteError, CassetteMissError, CassetteModel
from agentdag.models.config import ModelConfig, open_model
from agentdag.models.embedded import EmbeddedServer, find_model_file, serve_forever
from agentdag.models.function import FunctionModel
from agentdag.models.openai import OpenAIModel

__all__ = (
    "CassetteError",
    "CassetteMissError",
    "CassetteModel",
    "EmbeddedServer",
    "FunctionModel",
    "Model",
    "ModelConfig",
    "OpenAIModel",
    "WrapperModel",
    "find_model_file",
    "open_model",
    "serve_forever",
)
