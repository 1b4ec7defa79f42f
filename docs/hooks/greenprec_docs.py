"""MkDocs hooks of the greenprec site (mkdocs.yml, ``hooks:``).

- docs/changelog.md shows the repository's CHANGELOG.md, read at build time. The page holds a
  marker line; the hook puts CHANGELOG.md in its place, so the changelog is never
  copied. Links in CHANGELOG.md are written from the repository root (``docs/cluster.md``); on
  the page they become links between pages (``cluster.md``), and links to other files of the
  repository (``src/...``) point at the repository on GitHub.
- The docstrings name objects with Sphinx roles (``:class:`Reading```); the API pages show the
  name alone, as code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MARKER = "<!-- changelog: CHANGELOG.md is included here at build time -->"
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj):<code>(~?)([^<]*)</code>")
_LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)\s]+)\)")


def _relink(match: re.Match[str], repo_url: str) -> str:
    target = match.group(1)
    if target.startswith("docs/"):
        return f"]({target.removeprefix('docs/')})"
    return f"]({repo_url.rstrip('/')}/blob/main/{target})"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "changelog.md" or MARKER not in markdown:
        return markdown
    changelog = Path(config["config_file_path"]).parent / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8")
    text = _LINK.sub(lambda m: _relink(m, config.get("repo_url") or ""), text)
    return markdown.replace(MARKER, text)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    if not page.file.src_uri.startswith("api/"):
        return html
    return _ROLE.sub(
        lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>",
        html,
    )
