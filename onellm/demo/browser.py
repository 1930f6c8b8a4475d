"""Drive a running ``onellm demo`` in headless Chromium (playwright): what the end-to-end tests and the README
screenshot (``python -m onellm.demo.screenshot``) do, in one place.

The browser is the system's Chromium (Debian ``chromium``; ``$ONELLM_CHROMIUM`` overrides the path): playwright's
own browser download is never used. :func:`serve` starts ``python -m onellm.commands.demo`` in a subprocess and
waits until it answers HTTP.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
DEFAULT_TIMEOUT_S = 120.0
# the text of a gradio Markdown block: its rendered markdown, not the progress overlay beside it
_TEXT_JS = ("sel => { const e = document.querySelector(sel); if (!e) return null;"
            " const m = e.querySelector('[data-testid=markdown]'); return (m || e).innerText; }")


def chromium_path() -> str | None:
    """The Chromium executable: ``$ONELLM_CHROMIUM``, else ``/usr/bin/chromium`` or ``chromium`` on the PATH."""
    candidates = [os.environ.get("ONELLM_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                  shutil.which("chromium-browser")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the demo server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


@contextlib.contextmanager
def serve(model_dir: "str | os.PathLike", args: Sequence[str] = (), port: int | None = None,
          log_path: "str | os.PathLike | None" = None, timeout_s: float = 300.0) -> Iterator[str]:
    """Run ``onellm demo --model model_dir *args`` on 127.0.0.1 in a subprocess; yields its URL; stops it after."""
    port = port or free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    cmd = [sys.executable, "-m", "onellm.commands.demo", "--model", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), *args]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, timeout_s, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not subprocess.DEVNULL:
            log.close()


@contextlib.contextmanager
def chromium() -> Iterator["object"]:
    """A headless Chromium (playwright ``Browser``) on the system's executable."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium, or set ONELLM_CHROMIUM)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


class DemoPage:
    """One browser session of the demo (a playwright ``Page``) with the steps a user takes."""

    def __init__(self, page, url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.page, self.url, self.timeout_ms = page, url, timeout_s * 1000.0

    def open(self) -> "DemoPage":
        self.page.goto(self.url)
        self.page.wait_for_selector("#send", timeout=self.timeout_ms)
        return self

    # Inputs ------------------------------------------------------------------------------------------
    def tab(self, modality: str) -> None:
        """Show a modality's tab (through the "More tabs" menu when it does not fit)."""
        button = self.page.locator(f'[role=tab][data-tab-id="{modality}"]')
        if button.count() and button.first.is_visible():
            button.first.click()
        else:
            self.page.get_by_label("More tabs").click()
            label = self.page.locator(f"#modality-tabs .tab-container.visually-hidden button").nth(
                self._tab_index(modality)).inner_text()
            self.page.locator(".overflow-dropdown button", has_text=label).first.click()
        self.page.wait_for_selector(f"#tab-{modality}", state="visible", timeout=self.timeout_ms)

    def _tab_index(self, modality: str) -> int:
        ids = self.page.locator("#modality-tabs [role=tabpanel]").evaluate_all("els => els.map(e => e.id)")
        return ids.index(f"tab-{modality}")

    def upload(self, modality: str, path: "str | os.PathLike", **extras: "str | os.PathLike | float") -> None:
        """Put a file in a modality's upload (and its extra fields: ``rgb=``, ``timestamps=``, ``start=`` ...)."""
        self.tab(modality)
        for option, value in extras.items():  # the fields first: the upload then encodes with all of them
            self._set(f"#input-{modality}-{option}", value)
        self._set(f"#input-{modality}", path)

    def _set(self, selector: str, value) -> None:
        component = self.page.locator(selector)
        text = component.locator("input[type=text], textarea")
        if text.count():  # a number field
            text.first.fill(str(value))
            text.first.press("Enter")
            return
        files = component.locator("input[type=file]")
        if not files.count():  # a File component showing its file: clear it to get the upload back
            component.locator('button[aria-label="Clear"]').first.click()
            files.first.wait_for(state="attached", timeout=self.timeout_ms)
        files.first.set_input_files(str(value))

    def status_text(self, element: str) -> str:
        """The text of a status line ``#<element>`` (its markdown, without gradio's progress overlay)."""
        return self.page.evaluate(f"() => ({_TEXT_JS})('#{element}')") or ""

    def wait_status(self, element: str, *needles: str) -> str:
        """Wait until the status element ``#<element>`` shows one of ``needles``; returns its text."""
        self.page.wait_for_function(
            f"([sel, needles]) => {{ const t = ({_TEXT_JS})(sel);"
            " return t !== null && needles.some(n => t.includes(n)); }",
            arg=[f"#{element}", list(needles)], timeout=self.timeout_ms)
        return self.status_text(element)

    def input_status(self, modality: str, *needles: str) -> str:
        return self.wait_status(f"status-{modality}", *(needles or ("Encoded", "Error")))

    # Chat --------------------------------------------------------------------------------------------
    def answers(self) -> list[str]:
        """The assistant messages shown, as their raw text (the bubble's accessible label, not the rendered
        markdown)."""
        prefix = "bot's message: "
        labels = self.page.locator("#chatbot [data-testid=bot]").evaluate_all(
            "els => els.map(e => e.getAttribute('aria-label') || e.innerText)")
        return [label[len(prefix):] if label.startswith(prefix) else label for label in labels]

    def ask(self, question: str, wait: bool = True) -> str:
        """Type a question, send it, wait for the turn to finish (a new answer, or a new final status); returns the
        chat status line."""
        before, count = self.status_text("status"), len(self.answers())
        self.page.fill("#question textarea", question)
        self.page.click("#send")
        if not wait:
            return before
        self.page.wait_for_function(
            f"([before, count]) => {{ const s = ({_TEXT_JS})('#status') || '';"
            " const n = document.querySelectorAll('#chatbot [data-testid=bot]').length;"
            " const final = ['Answered', 'Error', 'Stopped', 'Upload an input'].some(w => s.includes(w));"
            " return final && (n > count || s !== before); }",
            arg=[before, count], timeout=self.timeout_ms)
        return self.status_text("status")

    def screenshot(self, path: "str | os.PathLike", max_bytes: int = 200_000) -> Path:
        """A PNG of the page, palette-quantised (and scaled down if need be) to stay under ``max_bytes``."""
        from PIL import Image

        picture = Image.open(io.BytesIO(self.page.screenshot(full_page=False))).convert("RGB")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        scale = 1.0
        while True:
            small = picture if scale == 1.0 else picture.resize(
                (int(picture.width * scale), int(picture.height * scale)), Image.LANCZOS)
            small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, format="PNG", optimize=True)
            if path.stat().st_size <= max_bytes or scale < 0.3:
                return path
            scale *= 0.85
