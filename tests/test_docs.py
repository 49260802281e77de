"""The documentation's Python examples run, and every page is in the toctree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
PAGES_WITH_CODE = [p for p in PAGES if BLOCK.search(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a page's ```python blocks in order, in one namespace, in a temp folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8"))):
        code = compile(match.group(1), f"{page.name}[block {i}]", "exec")
        exec(code, namespace)


def test_every_page_is_reachable_from_a_toctree() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    listed = set()
    for page in PAGES:
        for block in re.findall(r"```\{toctree\}(.*?)```", page.read_text(encoding="utf-8"), re.S):
            for line in block.splitlines():
                entry = line.strip()
                if entry and not entry.startswith(":"):
                    listed.add((page.parent / entry).with_suffix(".md").resolve())
    orphans = [p for p in PAGES if p.name != "index.md" or p.parent != DOCS]
    orphans = [p for p in orphans if p.resolve() not in listed]
    assert not orphans, f"pages missing from every toctree: {orphans}"
    assert "toctree" in text
