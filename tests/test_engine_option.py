"""The engine option of ``onellm infer`` / ``onellm eval`` / ``run_inference`` in the main environment (no vLLM):
``hf`` stays the default and unchanged; ``vllm`` is a one-line error saying how to install it; importing the
inference code never imports vLLM. (The vLLM engine itself is tested in its environment: tests/vllm.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_input_files

ROOT = Path(__file__).resolve().parents[1]

def _has_vllm() -> bool:
    from onellm.inference import vllm_available

    return vllm_available()


pytestmark = pytest.mark.skipif(_has_vllm(), reason="this environment has vLLM: the missing-vLLM error cannot be shown")


def run_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "onellm.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def requests(tmp_path):
    files = write_input_files(tmp_path / "files")
    rows = [{"id": "img", "inputs": [files["image"]], "prompt": "What is it?"},
            {"id": "aud", "inputs": [files["audio"]]}, {"id": "txt", "prompt": "Hello."},
            {"id": "bad", "inputs": [files["broken"]]}]
    manifest = tmp_path / "files" / "requests.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_importing_inference_does_not_import_vllm():
    code = ("import sys, onellm.inference, onellm.commands.infer, onellm.evaluation.engine, onellm.vllm, "
            "onellm.vllm.engine, onellm.vllm.bench\n"
            "assert not [m for m in sys.modules if m == 'vllm' or m.startswith('vllm.')], 'vllm imported'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("command", ["infer", "eval"])
def test_engine_vllm_without_vllm_is_a_one_line_error(tmp_path, model_dir, command):
    manifest = requests(tmp_path)
    if command == "infer":
        args = ["infer", "--engine", "vllm", "--model", str(model_dir), "--input", str(manifest), "--output",
                str(tmp_path / "out.jsonl")]
    else:
        args = ["eval", "--engine", "vllm", "--model", str(model_dir), "--benchmark", "synth", "--data",
                str(tmp_path), "--output", str(tmp_path / "eval")]
    res = run_cli(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"onellm {command}: error: ") and "vLLM is not installed" in lines[0]
    assert ".ci/vllm-env.sh" in lines[0] and "docs/vllm.md" in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "eval").exists()  # nothing was written


def test_serve_without_vllm_is_a_one_line_error(model_dir):
    res = subprocess.run([sys.executable, "-c", "from onellm.commands.serve import main; main()", "--model",
                          str(model_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "onellm serve: vLLM is not installed" in res.stderr
    res = subprocess.run([sys.executable, "-m", "onellm.cli", "serve", "--model", str(model_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # the same through the onellm command
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("onellm serve: error: ") \
        and "vLLM is not installed" in lines[0], res.stderr


def test_run_inference_with_vllm_raises_usage_error(tmp_path, model_dir):
    from onellm.data.manifest import read_manifest
    from onellm.errors import UsageError
    from onellm.inference import run_inference

    records = read_manifest(requests(tmp_path))
    with pytest.raises(UsageError, match="vLLM is not installed"):
        run_inference(str(model_dir), records, tmp_path / "o.jsonl", engine="vllm")
    with pytest.raises(UsageError, match="unknown engine"):
        run_inference(str(model_dir), records, tmp_path / "o.jsonl", engine="tgi")
    assert not (tmp_path / "o.jsonl").exists()


def test_hf_is_the_default_and_unchanged(tmp_path, model_dir):
    """No --engine = --engine hf: the same lines (greedy), error lines for bad inputs, the vLLM flags ignored."""
    import argparse
    import inspect

    from onellm.commands import infer
    from onellm.inference import run_inference

    p = argparse.ArgumentParser()
    infer.add_arguments(p)
    args = p.parse_args(["--model", "m", "--input", "i", "--output", "o"])
    assert (args.engine, args.tensor_parallel_size, args.data_parallel_size) == ("hf", 1, 1)
    assert inspect.signature(run_inference).parameters["engine"].default == "hf"
    manifest = requests(tmp_path)
    common = ["--model", str(model_dir), "--input", str(manifest), "--temperature", "0", "--max-new-tokens", "6",
              "--num-workers", "0", "--device", "cpu", "--dtype", "fp32"]
    a, b = run_cli("infer", *common, "--output", str(tmp_path / "a.jsonl")), run_cli(
        "infer", *common, "--output", str(tmp_path / "b.jsonl"), "--engine", "hf", "--max-num-seqs", "7")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    rows = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    rows_b = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
              for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert rows == rows_b and sorted(r["id"] for r in rows) == ["aud", "bad", "img", "txt"]
    by_id = {r["id"]: r for r in rows}
    assert "error" in by_id["bad"] and all(isinstance(by_id[i]["answer"], str) for i in ("img", "aud", "txt"))
    # the same answers as the library's generate on the processor's batch (the HF path itself)
    import torch

    from onellm.generation import GenerationConfig, generate
    from onellm.inference import load_for_inference, processor_of

    model = load_for_inference(model_dir, "cpu", "fp32")
    processor = processor_of(model)
    sample = processor.prompt_sample("Hello.")
    batch = processor.collate([sample], padding_side="left", with_labels=False)
    with torch.no_grad():
        out = generate(model, processor, batch, GenerationConfig(temperature=0, max_new_tokens=6))
    assert out.texts[0] == by_id["txt"]["answer"]


def test_tensor_parallel_needs_the_vllm_engine(tmp_path, model_dir):
    res = run_cli("infer", "--model", str(model_dir), "--input", str(requests(tmp_path)), "--output",
                  str(tmp_path / "o.jsonl"), "--tensor-parallel-size", "2")
    assert res.returncode == 2 and "--tensor-parallel-size applies to --engine vllm" in res.stderr


def test_data_parallel_relaunches_as_ranks(tmp_path, model_dir):
    """--data-parallel-size 2 with the HF engine: two ranks (torch.distributed.run), one merged output."""
    manifest = requests(tmp_path)
    out = tmp_path / "dp.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "onellm.cli", "infer", "--data-parallel-size", "2", "--model",
                          str(model_dir), "--input", str(manifest), "--output", str(out), "--max-new-tokens", "4",
                          "--num-workers", "0", "--device", "cpu"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["aud", "bad", "img", "txt"]
    assert not list(tmp_path.glob("dp.jsonl.rank*"))


def test_without_option_drops_the_flag():
    from onellm.commands.infer import without_option

    argv = ["infer", "--data-parallel-size", "2", "--model", "m", "--data-parallel-size=3", "--seed", "1"]
    assert without_option(argv, "--data-parallel-size") == ["infer", "--model", "m", "--seed", "1"]


def test_bench_engines_section_without_vllm(monkeypatch):
    """`onellm bench`'s "inference engines" section says where to get vLLM when there is no vLLM environment."""
    import onellm.vllm.bench as vbench

    monkeypatch.setattr(vbench, "find_vllm_python", lambda explicit=None: None)
    res = vbench.inference_engines("small", "cpu", "fp32", requests=64)
    assert res["status"] == vbench.NOT_INSTALLED == "vllm not installed (see docs/vllm.md)"
    lines = vbench.format_engines(res)
    assert lines[0].startswith("inference engines (small, 65 requests, 32 new tokens") and lines[1].strip() == \
        "vllm not installed (see docs/vllm.md)"
    assert vbench.format_engines({"status": "skipped with --quick (--engines-requests N runs it)"}) == [
        "inference engines: skipped with --quick (--engines-requests N runs it)"]
    monkeypatch.undo()  # the real find_vllm_python: an explicit interpreter, then $ONELLM_VLLM_PYTHON
    monkeypatch.setenv("ONELLM_VLLM_PYTHON", "/opt/vllm/bin/python")
    assert vbench.find_vllm_python("/x/python") == "/x/python"
    assert vbench.find_vllm_python() == "/opt/vllm/bin/python"
