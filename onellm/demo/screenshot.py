"""Make the README's screenshot of the web demo from a real run: ``python -m onellm.demo.screenshot --model DIR
--out docs/images/demo.png``.

Starts ``onellm demo`` on the model (greedy), opens it in headless Chromium, uploads the image of the first image
example (the synthetic world), asks its caption question and one follow-up, and saves a palette PNG under 200 KB:
the same code path as the browser tests (``onellm.demo.browser``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def make_screenshot(model_dir: str, out: str, modality: str = "image", questions: tuple[str, ...] = (),
                    width: int = 1280, height: int = 860, max_new_tokens: int = 48) -> Path:
    from ..config import OneLLMConfig
    from .browser import DemoPage, chromium, serve
    from .examples import synthetic_examples

    with tempfile.TemporaryDirectory(prefix="onellm-demo-shot-") as tmp:
        config = OneLLMConfig.from_pretrained(model_dir)
        example = next(e for e in synthetic_examples(config, Path(tmp) / "files", modalities=[modality])
                       if e.tab == modality)
        (m, path, options), = example.inputs
        asked = questions or (example.question, "What colour is it?")
        args = ["--temperature", "0", "--max-new-tokens", str(max_new_tokens), "--examples-dir", str(Path(tmp) / "ex")]
        with serve(model_dir, args, log_path=Path(tmp) / "server.log") as url, chromium() as browser:
            page = DemoPage(browser.new_page(viewport={"width": width, "height": height}), url).open()
            page.upload(m, path, **options)
            page.input_status(m)
            for question in asked:
                status = page.ask(question)
                if "Answered" not in status:
                    raise RuntimeError(f"the demo did not answer {question!r}: {status}")
            return page.screenshot(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model directory (e.g. a quickstart model)")
    p.add_argument("--out", default="docs/images/demo.png")
    p.add_argument("--modality", default="image", help="which example to upload (default image)")
    p.add_argument("--question", action="append", default=[], help="question(s) to ask (default: the example's "
                                                                    "question and one follow-up)")
    args = p.parse_args(argv)
    path = make_screenshot(args.model, args.out, args.modality, tuple(args.question))
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
