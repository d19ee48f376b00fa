"""The README stays true: its two commands are the ones CI runs, and its map names real things."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_two_commands_and_ci_runs_the_test_one():
    assert "bash scripts/setup.sh && .venv/bin/python -m workbench train --out runs/first" in README
    assert "bash scripts/setup.sh && bash scripts/test.sh" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh" in ci and ci.rstrip().endswith("bash scripts/test.sh")


def test_every_mapped_notebook_and_module_exists():
    for nb in re.findall(r"`(\d\d_[a-z_]+)`", README):
        assert (ROOT / "notebooks" / f"{nb}.ipynb").exists(), nb
    for mod in re.findall(r"^\| `((?:workbench|verifiers)\.[a-z_]+)`", README, flags=re.M):
        path = ROOT / Path(*mod.split("."))
        assert path.with_suffix(".py").exists() or (path / "__init__.py").exists(), mod


def test_images_in_readme_exist():
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README):
        assert (ROOT / img).exists(), img


def _quickstart() -> str:
    section = README.split("### Quick start in Python", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


def test_quickstart_snippet_runs(tiny_path, capsys):
    """The README's Python quick-start runs as written: one group sampled, scored, one step."""
    code = _quickstart()
    assert "import workbench as wb" in code
    exec(compile(code, "README quick start", "exec"), {})
    out = [line for line in capsys.readouterr().out.strip().splitlines()
           if not line.startswith("[workbench]")]                # the loader's one line
    assert len(out) == 3
    assert "answer" in out[0]
    float(out[-1])                                   # the step's mean reward
