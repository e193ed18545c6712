"""Planner prompt templates: data files in `planners/`, loaded by name or from a user's own file.

A template is YAML with the keys of `PlannerTemplate`. Placeholders are written `${name}`; anything else
with a dollar sign (such as `$1` in examples) is left alone.
"""

from __future__ import annotations

import importlib.resources
import re
import string
from collections.abc import Collection
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from agentdag.errors import TaskFileError

__all__ = ["PlannerExample", "PlannerTemplate", "fill", "load_template", "select_examples"]


class PlannerExample(BaseModel):
    """A few-shot example: a task, the plan the model should write for it, and the tools it uses.

    An example is shown only when every tool it uses is offered, so that small models are not tempted
    to copy the names of tools they do not have.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    plan: str
    tools: tuple[str, ...] = ()


class PlannerTemplate(BaseModel):
    """The prompts of one planner style.

    Attributes:
        style: the plan format the prompts ask for ("json" or "llmcompiler").
        system: the planner's instructions; `${tools}` and `${first_id}` are filled in.
        examples: the pool of few-shot examples; those chosen for a task are sent as earlier turns.
        max_examples: how many examples a request shows: the ones most like the task (`select_examples`).
        user: the task message (`${task}`).
        repair: sent after an invalid plan (`${problems}`, `${kept}`).
        replan: sent for a new round (`${observations}`, `${reason}`, `${first_id}`).
        joiner: the joiner's prompt (`${task}`, `${observations}`).
        joiner_retry: sent once after a joiner reply that is not a decision (`${error}`).
        refine: mid-run refinement (`${task}`, `${observations}`, `${pending}`, `${first_id}`).
        direct: the fallback that answers without tools (`${task}`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    style: Literal["json", "llmcompiler"]
    system: str
    examples: tuple[PlannerExample, ...] = Field(default=())
    max_examples: int = Field(default=3, ge=0)
    user: str
    repair: str
    replan: str
    joiner: str
    joiner_retry: str = (
        "Your reply could not be used: ${error}.\nReply with one JSON object "
        '{"thought": "...", "answer": "...", "action": "finish" or "replan", "reason": "..."}.'
    )
    refine: str
    direct: str


_SHAPE = re.compile(r"[a-z]+|\d+(?:\.\d+)?|[-+*/()%^]")


def select_examples(template: PlannerTemplate, tools: Collection[str], task: str) -> list[PlannerExample]:
    """The `max_examples` examples whose tools are all offered and whose tasks are most like `task`.

    Likeness is the overlap (Jaccard) of the tasks' shapes: their lowercase words and operator signs, with
    every number standing for any number, so "What is (3 + 4) * 5?" is like "What is (12 + 30) * 2?" and a
    comparison of two searches is like another. Ties keep the template's order. The chosen examples come
    least like the task first, so the most like it sits next to the task.
    """
    available = set(tools)
    offered = [example for example in template.examples if available.issuperset(example.tools)]
    shape = _shape(task)
    ranked = sorted(range(len(offered)), key=lambda index: (-_likeness(shape, _shape(offered[index].task)), index))
    chosen = ranked[: template.max_examples]
    return [offered[index] for index in reversed(chosen)]


def _shape(text: str) -> set[str]:
    return {"<n>" if token[0].isdigit() else token for token in _SHAPE.findall(text.lower())}


def _likeness(first: set[str], second: set[str]) -> float:
    union = first | second
    return len(first & second) / len(union) if union else 0.0


def fill(template: str, **values: object) -> str:
    """Fill `${name}` placeholders; other dollar signs stay as they are."""
    return string.Template(template).safe_substitute({key: str(value) for key, value in values.items()})


def _shipped_templates() -> Traversable:
    """The shipped templates: the installed `agentdag.planners` package, else `planners/` of the source tree.

    An installed agentdag maps `planners/` onto `agentdag.planners`; a checkout used without installing it
    (its root on `sys.path`) has the folder beside the `agentdag` package.
    """
    try:
        return importlib.resources.files("agentdag.planners")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "planners"


def load_template(name_or_path: str) -> PlannerTemplate:
    """Load a template shipped in `planners/` by name (e.g. "json"), or a YAML file by path.

    Raises:
        TaskFileError: no such template, or the file does not match the template schema.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise TaskFileError(f"{path}: cannot read the planner template: {error.strerror}") from None
        source = str(path)
    else:
        folder = _shipped_templates()
        resource = folder.joinpath(f"{name_or_path}.yaml")
        if not resource.is_file():
            names = [item.name for item in folder.iterdir()]
            shipped = sorted(name.removesuffix(".yaml") for name in names if name.endswith(".yaml"))
            raise TaskFileError(f"no planner template named {name_or_path!r} (shipped: {', '.join(shipped)})")
        text = resource.read_text(encoding="utf-8")
        source = f"planners/{name_or_path}.yaml"
    try:
        return PlannerTemplate.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as error:
        raise TaskFileError(f"{source}: invalid YAML: {error}") from None
    except pydantic.ValidationError as error:
        first = error.errors(include_url=False)[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise TaskFileError(f"{source}: {key}: {first['msg']}") from None
