"""The seed EPLB program, shipped as package data so a non-editable install finds it."""
from pathlib import Path

SEED_PATH = Path(__file__).with_name("eplb.py")
