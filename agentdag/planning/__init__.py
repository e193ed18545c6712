"""The planner loop, split by job.

`Planner` (the loop), the repair loop and the plan stream, the joiner, refinement, the prompts, and the run's
journal. See `agentdag.planning.planner`.
"""

from agentdag.planning.journal import JournalListener, RunJournal
from agentdag.planning.planner import Planner

__all__ = ("JournalListener", "Planner", "RunJournal")
