#!/usr/bin/env bash
# The documentation site (mkdocs.yml, Material, API pages from the docstrings) builds with no
# warning: broken links and anchors, pages missing from the nav and docstring problems fail it.
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_MKDOCS_2_WARNING=1
python3 -m mkdocs build --strict --site-dir "$(mktemp -d)"
