"""Every Python code block of the README and of the docs pages runs as written (in a fresh
process, in a scratch folder)."""

import os
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


@pytest.mark.slow
def test_the_wheel_builds_carries_its_data_and_passes_twine_check(tmp_path):
    # `python -m build --wheel` from the source tree (in an isolated environment with the build
    # backend pyproject.toml asks for), then `twine check` of the wheel's metadata and README rendering; the wheel
    # holds the shipped artifacts, the example spectrum and the native kernel's sources, which a
    # runtime install needs.
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    skip = shutil.ignore_patterns(".git", ".venv", "results", "site", "build", "dist", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=skip)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = tmp_path.glob("jaxcr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("jaxcr/data/icecube.npz", "jaxcr/data/hawc.npz", "jaxcr/data/example_icecube_spectrum.csv",
                   "jaxcr/native/plane_waves_ffi.cc", "jaxcr/native/plane_waves_kernels.h", "jaxcr/py.typed"):  # fmt: skip
        assert needed in names, needed
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel)], capture_output=True, text=True
    )
    assert check.returncode == 0 and "PASSED" in check.stdout, check.stdout + check.stderr


def test_a_release_tag_equals_the_version():
    # Releases are tags vX.Y.Z: where this checkout has tags, the newest one names the package's
    # version (pyproject.toml), and the changelog has that version's entry.
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()
    tags = subprocess.run(
        ["git", "-C", str(ROOT), "tag", "--list", "v*", "--sort=-v:refname"], capture_output=True, text=True
    )
    if tags.returncode != 0 or not tags.stdout.strip():
        pytest.skip("no git tags in this checkout (an sdist or a shallow clone)")
    assert tags.stdout.split()[0] == f"v{version}"


@pytest.mark.slow
def test_the_docs_site_links_its_references_and_opens_from_files(tmp_path):
    # mkdocs build (warnings are errors): pages are page.html (they navigate when opened from files),
    # no raw reST role is left in the API reference, and the roles became links (dozens per page).
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (site / "tutorial.html").exists() and (site / "api" / "models.html").exists()
    for page in (site / "api").glob("*.html"):
        html = page.read_text()
        assert not re.search(r":(func|class|mod|meth|attr):`", html), page.name
    assert (site / "api" / "inference.html").read_text().count("autorefs-internal") >= 30


@pytest.mark.slow
def test_the_notebook_runs_and_recovers_its_truth_within_the_box(tmp_path, monkeypatch):
    # docs/notebooks/first_fit.ipynb, its code cells run in order in one namespace (as a kernel
    # would), in a scratch folder: it writes the figure, fit.json and fit.png, and the fitted
    # r_L/λ_c's 95 % interval holds the truth 0.1.
    import json

    notebook = json.loads((ROOT / "docs/notebooks/first_fit.ipynb").read_text())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "first_fit.ipynb", "exec"), namespace)
    for produced in ("mock_sky.png", "fit/fit.json", "fit/fit.png"):
        assert (tmp_path / "notebook_output" / produced).exists(), produced
    low, high = namespace["result"].intervals["rho"]["95"][:2]
    assert low <= 0.1 <= high
