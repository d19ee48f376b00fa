"""The notebooks' shape, checked without running them (``pytest --nbmake notebooks/`` runs them).

Every notebook: a title cell with a Colab badge and honest run times for both modes, the same
Colab set-up cell as the README, one visible mode switch, asserts that tie its sketches to the
package, "Try this" exercises at the end, and committed outputs from one clean top-to-bottom run
(``bash scripts/run_notebooks.sh``) with no errors and no output over ~200 KB.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
COURSE = ["00_tour", "01_verifying_math", "02_checking_code", "03_groups_and_advantages",
          "04_training_with_grpo", "05_reward_hacking", "06_code_feedback",
          "07_tools_and_search", "08_distillation_vs_rl", "09_latent_reasoning",
          "10_reading_traces", "11_scaling_out"]
# every notebook in the folder gets every check below (the course's order is COURSE)
EXPECTED = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MAX_OUTPUT_BYTES = 200_000
MAX_COLUMNS = 80


def _load(name: str) -> dict:
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _colab_cell() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^```python\n(# Set-up: on Colab.*?)\n```$", readme, re.M | re.S)
    assert found, "the README shows the Colab set-up cell"
    return found.group(1)


def test_the_notebooks_exist_in_reading_order():
    assert EXPECTED[:6] == COURSE[:6]
    assert all(name in COURSE for name in EXPECTED), "a notebook outside the course's plan"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_opens_with_title_badge_and_run_times(name):
    first = _load(name)["cells"][0]
    assert first["cell_type"] == "markdown"
    text = _source(first)
    assert text.startswith(f"# {name[:2]} ")
    assert f"colab.research.google.com/github/rl-workbench/rl-workbench/blob/main/notebooks/" \
           f"{name}.ipynb" in text
    assert "**Run time.**" in text
    assert "Tiny default" in text or "Any machine" in text          # the CPU mode
    assert "T4" in text or "on a GPU" in text                          # the GPU mode


@pytest.mark.parametrize("name", EXPECTED)
def test_setup_cell_installs_on_colab_only_and_mode_is_one_visible_setting(name):
    cells = _load(name)["cells"]
    setup, mode = _source(cells[1]), _source(cells[2])
    assert 'if "google.colab" in sys.modules:' in setup
    assert setup == _colab_cell(), "the same set-up cell as the README's"
    assert "WB_GPU=auto" in setup, "the GPU extra only on a GPU runtime"
    assert re.search(r'^MODEL = "tiny"$', mode, re.M)
    assert "notebook_mode(MODEL)" in mode


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_teaches_with_asserts_and_ends_with_exercises(name):
    cells = _load(name)["cells"]
    code = "\n".join(_source(c) for c in cells if c["cell_type"] == "code")
    assert re.search(r"^\s*assert ", code, re.M), "a sketch is checked against the package"
    assert re.search(r"^from (workbench|verifiers)[\w.]* import", code, re.M)
    last = cells[-1]
    assert last["cell_type"] == "markdown" and "## Try this" in _source(last)


@pytest.mark.parametrize("name", EXPECTED)
def test_code_fits_in_80_columns(name):
    too_long = []
    for i, cell in enumerate(_load(name)["cells"]):
        if cell["cell_type"] != "code":
            continue
        for line in _source(cell).splitlines():
            if len(line) > MAX_COLUMNS and not line.lstrip().startswith("!"):
                too_long.append((i, len(line), line))
    assert not too_long, too_long


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_outputs_come_from_one_clean_run(name):
    cells = [c for c in _load(name)["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in cells]
    assert counts == list(range(1, len(cells) + 1)), \
        "run `bash scripts/run_notebooks.sh` to regenerate the outputs top to bottom"
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", (i, out.get("ename"), out.get("evalue"))
            size = len(json.dumps(out))
            assert size <= MAX_OUTPUT_BYTES, f"cell {i}: an output of {size // 1000} KB"
    assert sum(bool(c.get("outputs")) for c in cells) >= len(cells) // 2


def test_readme_maps_every_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in EXPECTED:
        assert f"`{name}`" in readme
