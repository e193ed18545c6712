"""`python -m agentdag.cli`: the command line, as the `agentdag` console script runs it."""

import sys

from agentdag.cli import main

sys.exit(main())
