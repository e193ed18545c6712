"""Model backends: the protocol, an OpenAI-compatible client, the embedded llama.cpp server, test doubles."""

from agentdag.models.base import Model, WrapperModel
from agentdag.models.function import FunctionModel

__all__ = ("FunctionModel", "Model", "WrapperModel")
