"""Every Python code block of the README and of the docs pages runs as written (in a fresh
process, in a scratch folder)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCKS = [
    (page.relative_to(ROOT).as_posix(), block)
    for page in PAGES
    for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
]


def test_readme_and_tutorial_have_python_examples():
    pages = {page for page, _ in BLOCKS}
    assert "README.md" in pages and "docs/tutorial.md" in pages, pages


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{page}-{i}" for i, (page, _) in enumerate(BLOCKS)])
def test_documentation_python_block_runs_as_written(tmp_path, index):
    script = tmp_path / f"block{index}.py"
    script.write_text(BLOCKS[index][1])
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
