"""Executor backends: where ready nodes run. The Ray backend lives in `agentdag.backends.ray`."""

from agentdag.backends.base import Backend, LocalBackend, NodeCall

__all__ = ("Backend", "LocalBackend", "NodeCall")
