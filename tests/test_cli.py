"""The ``onellm`` command line: fast --help for every command, --version, help text and defaults on every option,
one device default, interleaved ``train`` overrides, ``--dry-run``'s file checks, ``onellm env``."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from onellm.cli import COMMANDS, build_parser, main, parse_args

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "matplotlib", "deepspeed")

# Options without help text in files this change could not edit; each entry must still be missing (so the list
# shrinks as they are fixed): remove it together with the fix.
KNOWN_WITHOUT_HELP: set[tuple[str, str]] = set()

_TIMED_HELP = textwrap.dedent("""
    import json, sys, time
    start = time.perf_counter()
    from onellm.cli import main
    try:
        main(sys.argv[1:])
        code = 0
    except SystemExit as exc:
        code = exc.code
    seconds = time.perf_counter() - start
    heavy = [m for m in {heavy!r} if m in sys.modules]
    print(json.dumps({{"seconds": seconds, "heavy": heavy, "code": code}}), file=sys.stderr)
""").format(heavy=HEAVY)


def _timed_help(argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", _TIMED_HELP, *argv], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT)
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    result["stdout"] = proc.stdout
    return result


@pytest.mark.parametrize("command", [None, *COMMANDS], ids=lambda c: c or "onellm")
def test_every_help_is_under_a_second_and_imports_no_torch(command):
    """``onellm [COMMAND] --help`` must answer at once, whatever the command costs to run.

    Two checks. The deterministic one: after ``--help``, none of torch / transformers / matplotlib / DeepSpeed is
    imported (they are what cost seconds; each takes 1-10 s to import on a loaded 2-core machine). The timed one:
    ``time.perf_counter()`` around ``import onellm.cli`` + ``main([COMMAND, "--help"])`` in a fresh interpreter,
    which leaves out the interpreter's own start-up (not ours to make faster); typical values are 0.05-0.3 s
    against the 1 s limit. On a noisy shared machine one run can be slow for reasons that are not ours, so a run
    over half the limit is repeated and the median of three is what must stay under 1 s.
    """
    argv = [command, "--help"] if command else ["--help"]
    runs = [_timed_help(argv)]
    assert runs[0]["code"] == 0, runs[0]
    assert runs[0]["heavy"] == [], f"--help imported {runs[0]['heavy']}"
    assert "usage: onellm" in runs[0]["stdout"]
    if runs[0]["seconds"] > 0.5:
        runs += [_timed_help(argv) for _ in range(2)]
    seconds = statistics.median(r["seconds"] for r in runs)
    assert seconds < 1.0, f"onellm {command or ''} --help took {[round(r['seconds'], 2) for r in runs]} s"


def test_version(capsys):
    from onellm.version import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"onellm {__version__}"


def _options():
    """(command, action, formatted help line) of every option of every command."""
    parser = build_parser(load=True)
    for name, sub in parser.commands.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or action.help == argparse.SUPPRESS:
                continue
            text = formatter._expand_help(action) if action.help else ""
            yield name, action, text


def test_every_option_has_help_text_and_shows_its_default():
    parser = build_parser(load=True)
    assert set(parser.commands) == set(COMMANDS)
    for name, sub in parser.commands.items():
        sub.format_help()  # renders (a stray '%' in a help text would raise here)
    without_help, without_default = set(), []
    for name, action, text in _options():
        flag = action.option_strings[-1] if action.option_strings else action.dest
        if not text.strip():
            without_help.add((name, flag))
            continue
        default = action.default
        shows = (action.required or not action.option_strings or default in (None, False, argparse.SUPPRESS)
                 or default == [])
        if not shows and "default" not in text.lower():
            without_default.append((name, flag, default))
    assert without_default == [], f"options whose help does not show their default: {without_default}"
    assert without_help - KNOWN_WITHOUT_HELP == set(), "options without help text"
    assert KNOWN_WITHOUT_HELP - without_help == set(), "fixed: remove them from KNOWN_WITHOUT_HELP"


def test_defaults_are_shown_once():
    """An option whose text says its default already gets no second "(default: ...)"."""
    text = {(n, a.option_strings[-1]): t for n, a, t in _options() if a.option_strings}
    assert text[("convert", "--max-shard-size")].count("default") == 1
    assert text[("infer", "--batch-size")].endswith("(default: 8)")
    assert text[("bench", "--out")].count("default") == 1 and "runs/bench/" in text[("bench", "--out")]


def test_every_device_option_defaults_to_auto():
    devices = [(name, action.default) for name, action, _ in _options() if action.dest == "device"]
    assert len(devices) >= 8  # bench, cache-features, smoke, infer, chat, demo, eval, train
    assert {d for _, d in devices} == {"auto"}, devices


def test_light_constants_match_the_library():
    from onellm.commands.common import PRESETS
    from onellm.commands.convert import DTYPE_CHOICES
    from onellm.config import OneLLMConfig
    from onellm.convert import DTYPES

    assert tuple(PRESETS) == tuple(OneLLMConfig.presets())
    assert set(DTYPE_CHOICES) == set(DTYPES)


def test_articles_in_input_help():
    from onellm.commands.common import article

    assert [article(n) for n in ("image", "audio clip", "IMU recording", "fMRI recording", "video", "point cloud",
                                 "depth map", "SVG file", "UV map")] == [
        "an image", "an audio clip", "an IMU recording", "an fMRI recording", "a video", "a point cloud",
        "a depth map", "an SVG file", "a UV map"]
    text = {(n, a.option_strings[-1]): t for n, a, t in _options() if a.option_strings}
    assert text[("chat", "--image")].startswith("an image (")
    assert text[("chat", "--imu")].startswith("an IMU recording (")
    assert text[("chat", "--fmri")].startswith("an fMRI recording (")
    helps = " ".join(text.values())
    for wrong in (" a image", " a audio", " a IMU", " a fMRI"):
        assert wrong not in helps


def test_train_overrides_may_follow_the_options():
    args = parse_args(["train", "r.yaml", "a=1", "--dry-run", "b=2", "--device", "cpu", "c.d=[x]"])
    assert args.recipe == "r.yaml" and args.overrides == ["a=1", "b=2", "c.d=[x]"]
    assert args.dry_run and args.device == "cpu" and args._module == "onellm.commands.train"
    args = parse_args(["--debug", "train", "r.yaml", "--dry-run", "a=1"])
    assert args.debug and args.overrides == ["a=1"]
    args = parse_args(["train", "r.yaml", "--dry-run", "a=1", "--debug"])
    assert args.debug and args.overrides == ["a=1"]
    with pytest.raises(SystemExit):  # an unknown option is still an error, named by the train parser
        parse_args(["train", "r.yaml", "--dry-rn", "a=1"])


RECIPE = ROOT / "train" / "recipes" / "tiny_stage1_image.yaml"


def test_dry_run_with_overrides_after_the_flag(model_dir, tmp_path, capsys):
    manifest = tmp_path / "alignment.jsonl"
    manifest.write_text('{"id": "a", "inputs": [], "caption": "x"}\n')
    rc = main(["train", str(RECIPE), "--dry-run", f"model={model_dir}", f"datasets.0.manifest={manifest}",
               f"output_dir={tmp_path / 'out'}", "micro_batch=3", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "micro-batch 3" in out and "per cpu device" in out  # the overrides after --dry-run were applied
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["trainable"] > 0 and summary["total"] > summary["trainable"]
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_dry_run_names_a_missing_manifest_and_a_missing_model(model_dir, tmp_path, capsys):
    manifest = tmp_path / "alignment.jsonl"
    manifest.write_text('{"id": "a", "inputs": [], "caption": "x"}\n')
    missing = tmp_path / "nowhere.jsonl"
    rc = main(["train", str(RECIPE), "--dry-run", f"model={model_dir}", f"datasets.0.manifest={missing}",
               f"datasets.1.manifest={manifest}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1  # one line, naming the file and the recipe key
    assert err[0].startswith("onellm train: error: ") and f"{missing}: manifest not found (datasets.0.manifest)" in err[0]
    assert str(manifest) not in err[0]

    rc = main(["train", str(RECIPE), "--dry-run", f"model={tmp_path / 'no-model'}", f"datasets.0.manifest={missing}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"{tmp_path / 'no-model'}: starting model directory not found (model:" in err[0]
    assert f"{missing}: manifest not found" in err[0]  # every missing file at once

    (tmp_path / "empty").mkdir()
    rc = main(["train", str(RECIPE), "--dry-run", f"model={tmp_path / 'empty'}", f"datasets.0.manifest={manifest}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a OneLLM model directory" in err[0] and str(tmp_path / "empty") in err[0]

    rc = main(["train", str(RECIPE), "--dry-run", f"model={model_dir}", f"datasets.0.manifest={manifest}",
               f"feature_cache={tmp_path / 'features'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"{tmp_path / 'features'}: feature cache not found" in err[0]


def test_relative_missing_paths_say_where_they_are_resolved(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["train", str(RECIPE), "--dry-run", f"model={model_dir}", "datasets.0.manifest=data/m.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2 and "data/m.jsonl: manifest not found" in err and f"working directory {tmp_path}" in err


# -- onellm env ------------------------------------------------------------------------------------------------
def test_env_reports_what_is_installed(capsys):
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from onellm.version import __version__

    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["onellm"] == __version__ and info["python"] == platform.python_version()
    assert info["torch"] == torch.__version__ and info["torch_cuda_build"] == torch.version.cuda
    assert info["cuda_available"] == torch.cuda.is_available()
    assert len(info["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert info["cpu_count"] == os.cpu_count()
    packages = info["packages"]
    for label, dist in (("transformers", "transformers"), ("open_clip", "open_clip_torch"),
                        ("deepspeed", "deepspeed"), ("accelerate", "accelerate"), ("peft", "peft")):
        assert packages[label] == version(dist)
    for label in ("flash-attn", "bitsandbytes", "vllm"):  # detected: a version when installed, else None
        try:
            expected = version(label)
        except PackageNotFoundError:
            expected = None
        assert packages[label] == expected

    assert main(["env"]) == 0
    text = capsys.readouterr().out
    for key in ("onellm", "python", "torch", "cuda_available", "gpus", "transformers", "open_clip", "deepspeed",
                "flash-attn", "nvidia_driver"):
        assert any(line.split()[0] == key for line in text.splitlines()), key


def test_env_lists_every_gpu_torch_sees(monkeypatch):
    """On a CPU-only machine, a faked CUDA runtime: every GPU's name, memory and capability come from torch."""
    import torch

    from onellm.commands import env

    class Props:
        def __init__(self, name, gib, major, minor):
            self.name, self.total_memory, self.major, self.minor = name, gib * 2**30, major, minor

    props = [Props("NVIDIA H100 80GB HBM3", 79.6, 9, 0), Props("NVIDIA A10G", 22.1, 8, 6)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda k: props[k])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 21, 5))
    info = env.torch_info()
    assert info["gpus"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.6, "compute_capability": "9.0"},
        {"index": 1, "name": "NVIDIA A10G", "memory_gib": 22.1, "compute_capability": "8.6"}]
    assert info["bf16_supported"] is True and info["nccl"] == "2.21.5"
    lines = env.format_env({**info, "packages": {"deepspeed": None}})
    assert any("gpu 1" in l and "NVIDIA A10G, 22.1 GiB" in l for l in lines)
    assert any(l.split()[0] == "deepspeed" and l.endswith("not installed") for l in lines)
