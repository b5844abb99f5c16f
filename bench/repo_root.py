"""Puts the repository root first on ``sys.path``, so that a benchmark run as
``python bench/<name>.py`` imports this tree's code rather than an installed headrace."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
