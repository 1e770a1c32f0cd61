"""eplb-evolve harness: the search loop, the Git population, the diff engine and the CLI."""
