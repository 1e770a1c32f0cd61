"""`python -m harness` is the same as the `eplb-evolve` console script."""
import sys

from harness.cli.main import main

sys.exit(main())
