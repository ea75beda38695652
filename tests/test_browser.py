"""Notebook 02's latent explorer in a real browser.

The test starts JupyterLab on localhost (its own token, port, config and settings folders),
opens a copy of ``notebooks/02_vae.ipynb`` in headless Chromium driven by Selenium, runs all
cells in smoke mode, and moves the ``z1`` slider of the latent explorer at the end of the
notebook: the decoded image must change. Any cell error or "Error displaying widget" fails it.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``);
``LABKIT_CHROMIUM`` and ``LABKIT_CHROMEDRIVER`` override their paths. Without them the test is
skipped, except in CI (``CI`` set), where a missing browser is a failure.
Deselect with ``-m "not browser"``.
"""

import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageChops

pytestmark = pytest.mark.browser

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_vae.ipynb"
INSTALL_HINT = (
    "install the browser and its driver with `apt-get install -y chromium chromium-driver` (Debian/Ubuntu), "
    "or point LABKIT_CHROMIUM and LABKIT_CHROMEDRIVER at a Chromium and a matching chromedriver"
)

# Time limits, in seconds; generous, because CI machines are shared.
SERVER_START_S = 90
PAGE_LOAD_S = 90
KERNEL_READY_S = 90
RUN_ALL_S = 300
WIDGET_UPDATE_S = 60
SETTLE_S = 1.5  # an image unchanged this long, with the kernel idle, is the final redraw

# Two screenshots of the explorer's image count as different when more than CHANGED_FRACTION of
# their pixels differ by more than PIXEL_TOLERANCE (of 255) in some channel. Screenshots are
# lossless and re-rendering the same figure changes no pixel. Moving z1 from 0 to 1 also moves the
# marker on the scatter panel and changes the title, together about 0.2% of the pixels; the smoke
# model's decoded digit changes gradually, by more than 8 grey levels on about 8% of the image.
PIXEL_TOLERANCE = 8
CHANGED_FRACTION = 0.02
UNCHANGED_FRACTION = 0.001

# JupyterLab user settings for the test's own settings folder: every cell in the DOM (the default
# windowing leaves cells out of view unrendered), no autosave, no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def _executable(env_var, default):
    path = os.environ.get(env_var) or default
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


@pytest.fixture(scope="module")
def browser_paths():
    """(chromium, chromedriver); skipped when missing, except in CI, where that is a failure."""
    chromium = _executable("LABKIT_CHROMIUM", "/usr/bin/chromium")
    driver = _executable("LABKIT_CHROMEDRIVER", "/usr/bin/chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = " and ".join(name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path)
    message = f"{missing} not found; {INSTALL_HINT}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set, so the browser test must run, but {message}", pytrace=False)
    pytest.skip(message)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser_paths):
    """A JupyterLab server on a free localhost port whose kernels run notebook 02 in smoke mode."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    root.mkdir()
    # A copy, so that nothing (checkpoints, saved outputs) is written into the checkout.
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    for name, values in LAB_SETTINGS.items():
        path = home / "lab-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    env = dict(os.environ)
    env.pop("LABKIT_DATA", None)
    env.pop("MPLBACKEND", None)
    env.update(
        {
            "LABKIT_SMOKE": "1",
            "LABKIT_OFFLINE": "1",
            "LABKIT_RUNS": str(home / "runs"),
            # No user configuration, settings, workspaces or IPython profile.
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
            "IPYTHONDIR": str(home / "ipython"),
            # The kernel ("python" in its spec) is this interpreter, the one with labkit installed.
            "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        }
    )
    port, token = _free_port(), secrets.token_hex(16)
    log_path = home / "jupyterlab.log"
    log = open(log_path, "wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None",
        ]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # CI containers run as root
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with code {server.returncode} while starting; log:\n{_tail(log_path)}",
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"JupyterLab did not answer on {base}/api/status within {SERVER_START_S} s; "
                    f"log:\n{_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.5)
        yield {"base": base, "token": token, "log": log_path, "runs": home / "runs", "notebook": NOTEBOOK.name}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def browser(browser_paths):
    """Headless Chromium under Selenium; always quit, even when the test fails."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_S)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()


def _wait(description, condition, timeout, interval=0.5, on_timeout=None):
    """Poll condition() until it returns something truthy; fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f"; {on_timeout()}" if on_timeout else ""
            pytest.fail(f"timed out after {timeout} s waiting for {description}{detail}", pytrace=False)
        time.sleep(interval)


# One snapshot of the notebook: code-cell prompts, kernel status, errors shown anywhere.
NOTEBOOK_STATE_JS = r"""
const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
if (!nb) return null;
const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim());
const indicator = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
const errors = [];
nb.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').forEach(o => {
  if (/Traceback|Error displaying widget/.test(o.textContent)) {
    const cell = o.closest('.jp-CodeCell');
    const prompt = cell ? cell.querySelector('.jp-InputPrompt').textContent.trim() : '?';
    errors.push(prompt + ' ' + o.textContent.slice(-1500));
  }
});
if (document.body.innerText.includes('Error displaying widget')) errors.push('"Error displaying widget" in the page');
// The status bar shows the session's kernel status ("Python 3 (ipykernel) | Idle"), which, unlike
// the toolbar's execution indicator, reads idle only once the kernel is connected.
const kernel = [...document.querySelectorAll('.jp-StatusBar-TextItem')].map(t => t.textContent.trim())
  .find(t => / \| \S+$/.test(t));
const busy = indicator ? indicator.getAttribute('data-status') : null;
return {prompts: prompts, status: (busy === 'idle' && /\| Idle$/.test(kernel || '')) ? 'idle' : (kernel || busy),
        errors: errors};
"""

# The explorer: the sliders described "z1" and "z2" (role="slider" handles) and the first image
# that follows both of them in the notebook, wherever the explorer's layout puts it.
EXPLORER_JS = r"""
const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
if (!nb) return null;
function slider(name) {
  for (const label of nb.querySelectorAll('.jupyter-widgets .widget-label, .jupyter-widgets label')) {
    if (label.textContent.trim() !== name) continue;
    const box = label.closest('.widget-slider') || label.parentElement;
    const handle = box && box.querySelector('[role="slider"]');
    if (handle) return {box: box, handle: handle};
  }
  return null;
}
const z1 = slider('z1'), z2 = slider('z2');
if (!z1 || !z2) return {z1: !!z1, z2: !!z2, image: null};
const last = (z1.box.compareDocumentPosition(z2.box) & Node.DOCUMENT_POSITION_FOLLOWING) ? z2.box : z1.box;
const image = [...nb.querySelectorAll('.jp-OutputArea-output img, .widget-output img')].find(img =>
  (last.compareDocumentPosition(img) & Node.DOCUMENT_POSITION_FOLLOWING) && img.complete && img.naturalWidth > 0);
return {z1: true, z2: true, handle: z1.handle, value: z1.handle.getAttribute('aria-valuenow'),
        max: z1.handle.getAttribute('aria-valuemax'), image: image || null, src: image ? image.src : null};
"""


def _changed_fraction(png_a, png_b):
    a = Image.open(io.BytesIO(png_a)).convert("RGB")
    b = Image.open(io.BytesIO(png_b)).convert("RGB")
    if b.size != a.size:
        b = b.resize(a.size)
    red, green, blue = ImageChops.difference(a, b).split()
    largest = ImageChops.lighter(ImageChops.lighter(red, green), blue)  # per pixel, the largest channel change
    return sum(largest.histogram()[PIXEL_TOLERANCE + 1 :]) / (a.size[0] * a.size[1])


def test_latent_explorer_redraws_when_a_slider_moves(lab, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    state = lambda: driver.execute_script(NOTEBOOK_STATE_JS)  # noqa: E731

    def no_errors(snapshot):
        if snapshot and snapshot["errors"]:
            pytest.fail("the notebook shows errors:\n" + "\n---\n".join(snapshot["errors"]), pytrace=False)

    try:
        driver.get(f"{lab['base']}/lab/tree/{lab['notebook']}?token={lab['token']}")
        _wait(
            f"JupyterLab to open {lab['notebook']} with its code cells",
            lambda: (state() or {}).get("prompts"),
            PAGE_LOAD_S,
            on_timeout=lambda: f"server log:\n{_tail(lab['log'])}",
        )
        _wait(
            "the kernel to start and connect (status bar: '| Idle')",
            lambda: (state() or {}).get("status") == "idle",
            KERNEL_READY_S,
            on_timeout=lambda: f"kernel status {(state() or {}).get('status')!r}; server log:\n{_tail(lab['log'])}",
        )

        # Run > Run All Cells, through the menu bar like a student would.
        run_menu = _wait(
            "the Run menu in the menu bar",
            lambda: next(
                (
                    item
                    for item in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                    if item.text.strip() == "Run"
                ),
                None,
            ),
            PAGE_LOAD_S,
        )
        run_menu.click()
        # The Run menu's entry is "runmenu:run-all" (it dispatches to notebook:run-all-cells).
        _wait(
            "the Run > Run All Cells menu entry",
            lambda: driver.find_elements(
                By.CSS_SELECTOR,
                '.lm-Menu-item[data-command="runmenu:run-all"], .lm-Menu-item[data-command="notebook:run-all-cells"]',
            ),
            10,
        )[0].click()
        _wait("Run All Cells to start (a [*] prompt)", lambda: any(p == "[*]:" for p in state()["prompts"]), 30)

        started = time.monotonic()

        def finished():
            snapshot = state()
            no_errors(snapshot)
            return snapshot["status"] == "idle" and "[*]:" not in snapshot["prompts"] and snapshot

        done = _wait(
            "all cells to finish (no [*] prompt, kernel idle)",
            finished,
            RUN_ALL_S,
            interval=1,
            on_timeout=lambda: f"prompts {state()['prompts']}; server log:\n{_tail(lab['log'])}",
        )
        unrun = [i for i, p in enumerate(done["prompts"]) if not re.fullmatch(r"\[\d+\]:", p)]
        assert not unrun, (
            f"Run All Cells stopped early: code cells {unrun} did not run "
            f"(prompts {done['prompts']}); server log:\n{_tail(lab['log'])}"
        )
        print(f"ran {len(done['prompts'])} code cells in {time.monotonic() - started:.1f} s")
        assert list(lab["runs"].rglob("metrics.json")), (
            f"the notebook wrote no metrics.json under LABKIT_RUNS={lab['runs']}"
        )

        explorer = _wait(
            "the latent explorer: sliders 'z1' and 'z2' followed by an image",
            lambda: (lambda e: e if e and e["image"] else None)(driver.execute_script(EXPLORER_JS)),
            WIDGET_UPDATE_S,
            on_timeout=lambda: (
                f"found {driver.execute_script(EXPLORER_JS)} (is jupyterlab_widgets installed next to jupyterlab?)"
            ),
        )
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", explorer["image"])
        before = explorer["image"].screenshot_as_png
        again = explorer["image"].screenshot_as_png
        (tmp_path / "explorer_before.png").write_bytes(before)
        noise = _changed_fraction(before, again)
        assert noise < UNCHANGED_FRACTION, f"two screenshots of the unchanged explorer differ in {noise:.2%} of pixels"

        # Move z1 with the keyboard: each PageUp on the focused handle is one committed step of
        # 5 x 0.1. From 0 to 1 stays inside the cloud of test codes, so the scatter panel keeps its
        # axes and the pixels that change are the decoded digit's (plus the marker and the title).
        old_value, old_src = explorer["value"], explorer["src"]
        explorer["handle"].send_keys(Keys.PAGE_UP, Keys.PAGE_UP)
        _wait(
            f"slider z1 to move from {old_value}",
            lambda: driver.execute_script(EXPLORER_JS)["value"] != old_value,
            WIDGET_UPDATE_S,
        )
        last_seen = {"src": old_src, "since": time.monotonic()}

        def redrawn_and_settled():
            snapshot = state()
            no_errors(snapshot)
            current = driver.execute_script(EXPLORER_JS)
            if current["image"] is None or current["src"] == old_src:
                return None
            if current["src"] != last_seen["src"]:
                last_seen.update(src=current["src"], since=time.monotonic())
            settled = time.monotonic() - last_seen["since"] > SETTLE_S and snapshot["status"] == "idle"
            return current if settled else None

        _wait(
            "the explorer's image to be redrawn after moving z1 (and the kernel to be idle)",
            redrawn_and_settled,
            WIDGET_UPDATE_S,
            interval=0.25,
        )
        after_explorer = driver.execute_script(EXPLORER_JS)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", after_explorer["image"])
        after = after_explorer["image"].screenshot_as_png
        (tmp_path / "explorer_after.png").write_bytes(after)
        changed = _changed_fraction(before, after)
        print(f"z1 {old_value} -> {after_explorer['value']}: {changed:.2%} of the explorer's pixels changed")
        assert changed > CHANGED_FRACTION, (
            f"moving z1 from {old_value} to {after_explorer['value']} changed only {changed:.2%} of the "
            f"explorer image's pixels (need > {CHANGED_FRACTION:.0%}); screenshots in {tmp_path}"
        )
        no_errors(state())
    except BaseException:
        try:
            driver.save_screenshot(str(tmp_path / "page_at_failure.png"))
            (tmp_path / "page_at_failure.html").write_text(driver.page_source)
            print(f"screenshot and page source saved in {tmp_path}; server log {lab['log']}")
        except Exception as exc:  # a dead browser must not hide the original failure
            print(f"could not save the page ({exc}); server log {lab['log']}")
        raise
