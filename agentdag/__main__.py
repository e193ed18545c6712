"""`python -m agentdag`: the same command line as the `agentdag` script."""

import sys

from agentdag.cli import main

if __name__ == "__main__":
    sys.exit(main())
