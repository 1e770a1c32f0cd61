"""Where things are, for tests in any sub-folder."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
HOSTILE = TESTS / "hostile"
RESPONSES = TESTS / "responses"
SHARED_SEEDS = REPO.parent / "shared" / "seeds"
