"""``python -m greenprec.experiment.child FOLDER SPEC OUTCOME``: one run in a fresh process."""

from __future__ import annotations

import sys

from greenprec.experiment.execute import child_main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
