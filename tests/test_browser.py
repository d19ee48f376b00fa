"""The widgets in a real browser: JupyterLab on localhost, driven by headless Chromium.

A small notebook trains the tiny model for two steps into a run folder, then shows the training
dashboard, the group inspector, the trace browser and the verifier playground. The test runs all
of its cells in JupyterLab, waits for the widgets to render, checks their DOM against the run
folder (a completion's text, its reward, its advantage), clicks a control to check the kernel round
trip, and saves screenshots to ``test-artifacts/browser/``. With ``WB_UPDATE_SCREENSHOTS=1`` (or
when they are missing) it also refreshes the README's screenshots in ``docs/img/``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and the ``selenium`` package; skips with the reason when one is missing.
Run alone with ``pytest -m browser tests/test_browser.py`` (about a minute).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS_IMG = ROOT / "docs" / "img"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1400,2400", "--hide-scrollbars"]

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:                                                   # pragma: no cover
    pytest.skip("the browser test needs selenium (pip install selenium==4.51.0)",
                allow_module_level=True)
for _binary, _package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
    if not os.access(_binary, os.X_OK):
        pytest.skip(f"the browser test needs {_binary} (apt-get install {_package})",
                    allow_module_level=True)

NOTEBOOK_CELLS = [
    """\
from dataclasses import replace

from workbench.settings import TrainSettings
from workbench.trainer import GRPOTrainer
from workbench.widgets import (GroupInspector, TraceBrowser, TrainingDashboard,
                               VerifierPlayground, notebook_mode)

mode = notebook_mode("tiny")

s = TrainSettings()
s = replace(s, steps=2, eval_examples=8, checkpoint_every=2,
            grpo=replace(s.grpo, prompts_per_step=3, group_size=4, micro_batch_size=12,
                         generation_batch_size=12))
dashboard = TrainingDashboard(total_steps=s.steps, every=1)
trainer = GRPOTrainer(s, out="run", overwrite=True, verbose=False,
                      callbacks=[dashboard])
trainer.train()""",
    "GroupInspector('run', step=2, group=0)",
    "TraceBrowser('run')",
    "VerifierPlayground(completion='7+3=10\\n10+5=15\\n<answer>15</answer>', gold='15')",
    "print('ALL CELLS ' + 'DONE')",          # the marker is in the output, not the source
]


# every view of NOTEBOOK_CELLS is in the page: cards, trace rows, playground, dashboard image
VIEWS_RENDERED = ("return document.querySelectorAll('.wb-group .wb-card').length > 0 &&"
                  " document.querySelectorAll('.wb-traces .wb-trace').length > 0 &&"
                  " document.querySelector('.wb-playground') !== null &&"
                  " document.querySelector('.widget-image img, img.widget-image') !== null")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """JupyterLab user settings: no news or update checks, every cell attached to the DOM."""
    settings = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
            {"windowingMode": "none"},
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_path):
    """A JupyterLab server on a free localhost port, rooted in a fresh folder with the notebook."""
    import nbformat

    home = tmp_path_factory.mktemp("lab")
    work = home / "work"
    work.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, work / "widgets.ipynb")
    _write_settings(home / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               WB_CACHE=str(Path(tiny_path).parent))
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
         "--ServerApp.allow_root=True", "--LabApp.expose_app_in_browser=True",
         "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + (home / "lab.log").read_text())
            time.sleep(0.5)
        yield {"url": f"{base}/lab/tree/widgets.ipynb?token={token}&reset", "work": work,
               "log": home / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("SE_OFFLINE", "true")          # selenium-manager: never download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, what: str, timeout: float = 120.0, lab=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.5)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "timeout.png"))
    log = lab["log"].read_text()[-3000:] if lab else ""

    raise AssertionError(f"timed out waiting for {what}; screenshot in {ARTIFACTS}\n{log}")


def _shoot(driver, selector: str, name: str) -> Path:
    """Screenshot the output area holding ``selector`` to test-artifacts (and docs/img)."""
    element = driver.execute_script(
        "const el = document.querySelector(arguments[0]);"
        "const out = el && el.closest('.jp-OutputArea-output');"
        "if (out) out.scrollIntoView({block: 'start'});"
        "return out;", selector)
    assert element is not None, selector
    time.sleep(0.3)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    element.screenshot(str(path))
    docs = DOCS_IMG / f"{name}.png"
    if os.environ.get("WB_UPDATE_SCREENSHOTS") == "1" or not docs.exists():
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs)
    return path


def _text(driver, selector: str) -> str:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(e => e.textContent).join('\\n');", selector)


def test_widgets_render_in_jupyterlab(lab, browser):
    driver = browser
    driver.get(lab["url"])
    _wait(driver, "return window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell')"
          " !== null && document.querySelector('.jp-Notebook-ExecutionIndicator') !== null",
          "JupyterLab to open the notebook", timeout=90, lab=lab)
    _wait(driver, "return window.jupyterapp.shell.currentWidget &&"
          " window.jupyterapp.shell.currentWidget.sessionContext &&"
          " window.jupyterapp.shell.currentWidget.sessionContext.session &&"
          " window.jupyterapp.shell.currentWidget.sessionContext.session.kernel !== null",
          "the kernel to start", timeout=60, lab=lab)
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    _wait(driver, "return Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
          ".some(e => e.textContent.includes('ALL CELLS DONE'))",
          "all cells to run", timeout=150, lab=lab)
    _wait(driver, VIEWS_RENDERED, "the widgets to render", timeout=30, lab=lab)
    errors = _text(driver, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert "Traceback" not in errors, errors

    # The group inspector shows step 2, group 0 of the run: every completion, reward, advantage.
    traces = [json.loads(line) for line in (lab["work"] / "run" / "traces.jsonl").open()]
    group = sorted((t for t in traces if t["step"] == 2 and t["group"] == 0),
                   key=lambda t: t["index"])
    assert len(group) == 4
    cards = driver.find_elements(By.CSS_SELECTOR, ".wb-group .wb-card")
    group_cards = cards[:4]                      # the first inspector is the standalone one
    for card, t in zip(group_cards, group):
        text = card.text
        assert t["completion"].strip().splitlines()[0] in text
        assert f"{t['reward']:.2f}" in card.find_element(By.CSS_SELECTOR, ".wb-reward").text
        assert card.find_element(By.CSS_SELECTOR, ".wb-advantage").text.strip() == \
            (f"{t['advantage']:+.2f}" if t["advantage"] < 0 else f"{t['advantage']:.2f}")
        assert "extracted" in text and "normalised" in text        # the verdict path
        assert ("correct (" if t["components"]["answer"] == 1 else "wrong (") in text
    inspector_text = _text(driver, ".wb-group")
    assert group[0]["prompt"] in inspector_text

    # The trace browser lists the last step's completions, with their text and reward.
    rows = driver.find_elements(By.CSS_SELECTOR, ".wb-traces .wb-trace")
    last_step = [t for t in traces if t["step"] == 2]
    assert len(rows) == len(last_step)
    first = rows[0].text
    assert last_step[0]["completion"].strip().splitlines()[0] in first
    assert f"{last_step[0]['reward']:.2f}" in first

    # A round trip through the kernel: tick "all steps" and the table grows to both steps.
    driver.execute_script(
        "const boxes = Array.from(document.querySelectorAll('.widget-checkbox'))"
        ".filter(b => b.textContent.includes('all steps'));"
        "boxes[0].querySelector('input').click();")
    _wait(driver, f"return document.querySelectorAll('.wb-traces .wb-trace').length == "
          f"{min(20, len(traces))}", "the trace browser to show both steps", timeout=30, lab=lab)

    # Open a step-1 completion in the trace browser's own group inspector.
    _wait(driver, "return Array.from(document.querySelectorAll('.widget-dropdown option'))"
          ".some(o => o.text.replace(/\\u00a0/g, ' ').startsWith('step 1 · group 2'))",
          "the trace browser's row picker to list step 1", timeout=30, lab=lab)
    driver.execute_script(                      # ipywidgets writes labels with no-break spaces
        "const label = o => o.text.replace(/\\u00a0/g, ' ');"
        "const select = Array.from(document.querySelectorAll('.widget-dropdown select'))"
        ".find(s => Array.from(s.options).some(o => label(o).startsWith('step 1 · group 2')));"
        "select.value = Array.from(select.options)"
        ".find(o => label(o).startsWith('step 1 · group 2')).value;"
        "select.dispatchEvent(new Event('change', {bubbles: true}));")
    time.sleep(1.0)
    driver.execute_script(
        "Array.from(document.querySelectorAll('button'))"
        ".find(b => b.textContent.includes('open in inspector')).click();")
    _wait(driver, "const groups = document.querySelectorAll('.wb-group');"
          "return groups.length > 1 && groups[groups.length - 1].textContent"
          ".includes('step 1 · group 2');",
          "the trace browser to open a group in its inspector", timeout=30, lab=lab)
    opened = [t for t in traces if t["step"] == 1 and t["group"] == 2]
    assert opened[0]["completion"].strip().splitlines()[0] in \
        driver.find_elements(By.CSS_SELECTOR, ".wb-group")[-1].text

    # The verifier playground shows the verdict path.
    playground = _text(driver, ".wb-playground")
    assert "extracted" in playground and "correct (equal)" in playground

    driver.execute_script("document.querySelector('.jp-Notebook').scrollTop = 0;")
    driver.save_screenshot(str(ARTIFACTS / "notebook.png"))
    shots = [_shoot(driver, ".widget-image img, img.widget-image", "training_dashboard"),
             _shoot(driver, ".wb-group", "group_inspector"),
             _shoot(driver, ".wb-traces", "trace_browser"),
             _shoot(driver, ".wb-playground", "verifier_playground")]
    for shot in shots:
        assert shot.stat().st_size > 5_000, shot


def test_saved_notebook_reopens_with_every_view(lab, browser):
    """Run all -> save -> close -> reopen: every widget shows its last state from the saved
    notebook (JupyterLab's widget state, on in this environment through scripts/setup.sh's
    overrides.json), never "Error displaying widget: model not found"; and every widget output
    also carries a static, inline-styled HTML view for renderers without widgets (GitHub)."""
    driver = browser
    if not any(".wb-group" in (e.get_attribute("innerHTML") or "")
               for e in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")):
        test_widgets_render_in_jupyterlab(lab, browser)            # run alone: run all first
    path = lab["work"] / "widgets.ipynb"
    driver.execute_script("window.jupyterapp.commands.execute('docmanager:save');")
    state_key = "application/vnd.jupyter.widget-state+json"
    deadline = time.time() + 60
    while time.time() < deadline:
        saved = json.loads(path.read_text())
        if saved.get("metadata", {}).get("widgets", {}).get(state_key, {}).get("state"):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the saved notebook holds no widget state: is saveState on? "
                             "(scripts/jupyterlab-overrides.json)")
    widget_outputs = [o for c in saved["cells"] for o in c.get("outputs", [])
                      if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widget_outputs) >= 4
    for out in widget_outputs:
        static = out["data"].get("text/html") or out["data"].get("image/png")
        assert static, "a widget output without a static view"
        if "text/html" in out["data"]:
            html_text = "".join(out["data"]["text/html"])
            assert "<style" not in html_text and "style='" in html_text

    driver.execute_script("window.jupyterapp.commands.execute('notebook:close-and-shutdown');")
    time.sleep(2.0)
    driver.get(lab["url"])
    _wait(driver, "return document.querySelectorAll('.jp-Notebook .jp-Cell').length > 0",
          "JupyterLab to reopen the notebook", timeout=90, lab=lab)
    _wait(driver, VIEWS_RENDERED, "the saved views to render after reopening", timeout=60,
          lab=lab)
    outputs = _text(driver, ".jp-OutputArea-output")
    assert "Error displaying widget" not in outputs
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "reopened.png"))
