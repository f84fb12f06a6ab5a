"""Where the repository is: relative defaults (``conf/``, ``.cache/``) resolve from any cwd."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the repository: src/dear/utils/paths.py → ../../../
