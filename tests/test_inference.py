"""Model directories, `onellm init`, and `onellm infer` end to end (resume, bad inputs, several ranks)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from onellm import OneLLM
from onellm.checkpoint import CheckpointError
from onellm.cli import main
from onellm.data.collate import collate_packed
from onellm.generation import GenerationConfig, generate
from onellm.processing import OneLLMProcessor

from helpers import processor_for, request_sample, tiny_model_with_tokenizer, write_input_files

ROOT = Path(__file__).resolve().parents[1]


def test_init_tiny_offline(model_dir):
    files = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.model", "processor_config.json"} <= files
    model = OneLLM.from_pretrained(model_dir)
    processor = OneLLMProcessor.from_pretrained(model_dir)
    assert len(processor.text) == model.config.llm.vocab_size
    assert len(processor.text.encode("a red circle")) > 1  # a real vocabulary, not 3 tokens
    assert not model.training


def test_save_load_roundtrip_gives_equal_outputs(tmp_path, text_tokenizer):
    model = tiny_model_with_tokenizer(text_tokenizer)
    processor = processor_for(model, text_tokenizer)
    g = torch.Generator().manual_seed(0)
    samples = [request_sample(processor, [m], "What is it?", g) for m in ("image", "point", "fmri")]
    batch = collate_packed(samples, padding_side="left", with_labels=False)
    gen = GenerationConfig(max_new_tokens=6, temperature=0)
    before = generate(model, processor, batch, gen).token_ids
    model.save_pretrained(tmp_path / "m", processor=processor, max_shard_size="2MB")
    assert (tmp_path / "m" / "model.safetensors.index.json").exists()  # sharded
    loaded = OneLLM.from_pretrained(tmp_path / "m")
    assert generate(loaded, OneLLMProcessor.from_pretrained(tmp_path / "m"), batch, gen).token_ids == before
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    half = OneLLM.from_pretrained(tmp_path / "m", dtype=torch.bfloat16)
    assert half.llm.lm_head.weight.dtype == torch.bfloat16


def test_strict_loading_lists_missing_and_unexpected_keys(tmp_path, text_tokenizer):
    from safetensors.torch import load_file, save_file

    model = tiny_model_with_tokenizer(text_tokenizer)
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    sd = load_file(str(weights))
    del sd["upm.start_tag.audio"]
    sd["upm.something_else"] = torch.zeros(2)
    save_file(sd, str(weights))
    with pytest.raises(CheckpointError) as err:
        OneLLM.from_pretrained(tmp_path / "m")
    assert "upm.start_tag.audio" in str(err.value) and "upm.something_else" in str(err.value)
    with pytest.raises(CheckpointError, match="not a OneLLM model directory"):
        OneLLM.from_pretrained(tmp_path)


def make_requests(tmp_path, n_per_modality=2):
    inputs = write_input_files(tmp_path / "files")
    rows = []
    for name in ("image", "depth", "audio", "point", "fmri", "imu"):
        for k in range(n_per_modality):
            rows.append({"id": f"{name}-{k}", "inputs": [inputs[name]], **({"prompt": "What is it?"} if k % 2 else {})})
    rows.append({"id": "two-inputs", "inputs": [inputs["image"], inputs["audio"]], "prompt": "Describe both."})
    rows.append({"id": "text-only", "prompt": "Hello there."})
    rows.append({"id": "broken", "inputs": [inputs["broken"]]})
    rows.append({"id": "missing", "inputs": [inputs["missing"]]})
    manifest = tmp_path / "files" / "requests.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest, [r["id"] for r in rows]


def read_lines(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines()]


def test_infer_end_to_end_with_bad_inputs(tmp_path, model_dir, capsys):
    manifest, ids = make_requests(tmp_path)
    out = tmp_path / "answers.jsonl"
    code = main(["infer", "--model", str(model_dir), "--input", str(manifest), "--output", str(out),
                 "--batch-size", "3", "--max-new-tokens", "5", "--temperature", "0", "--num-workers", "2"])
    assert code == 0
    rows = read_lines(out)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    by_id = {r["id"]: r for r in rows}
    assert "broken.png" in by_id["broken"]["error"] and "nowhere.wav" in by_id["missing"]["error"]
    assert all(isinstance(by_id[i]["answer"], str) for i in ids if i not in ("broken", "missing"))
    assert "2 failed" in capsys.readouterr().out
    # re-running skips everything already answered and appends nothing
    assert main(["infer", "--model", str(model_dir), "--input", str(manifest), "--output", str(out),
                 "--max-new-tokens", "5", "--num-workers", "0"]) == 0
    assert len(read_lines(out)) == len(ids)


def test_infer_exits_nonzero_only_when_everything_failed(tmp_path, model_dir):
    write_input_files(tmp_path)
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(json.dumps({"id": "x", "inputs": [{"modality": "image", "path": "broken.png"}]}) + "\n")
    assert main(["infer", "--model", str(model_dir), "--input", str(manifest), "--output",
                 str(tmp_path / "o.jsonl"), "--num-workers", "0"]) == 1


def cli(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "onellm.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_infer_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path, model_dir):
    manifest, ids = make_requests(tmp_path, n_per_modality=8)
    out = tmp_path / "answers.jsonl"
    args = ["infer", "--model", str(model_dir), "--input", str(manifest), "--output", str(out),
            "--batch-size", "2", "--max-new-tokens", "24", "--temperature", "0", "--num-workers", "1"]
    proc = cli(*args)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 6):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text().splitlines()
    assert 6 <= len(partial) < len(ids), "the run should have been killed mid-way"
    with out.open("a") as f:
        f.write('{"id": "torn-li')  # a kill mid-write leaves a torn last line
    done = cli(*args)
    log, _ = done.communicate(timeout=300)
    assert done.returncode == 0, log
    rows = read_lines(out)
    assert sorted(r["id"] for r in rows) == sorted(ids)  # nothing lost, nothing duplicated
    assert [json.loads(l)["id"] for l in partial] == [r["id"] for r in rows[: len(partial)]]  # kept as written


def test_infer_on_two_ranks_shards_and_merges(tmp_path, model_dir):
    manifest, ids = make_requests(tmp_path, n_per_modality=2)
    out = tmp_path / "answers.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                          "-m", "onellm.cli", "infer", "--model", str(model_dir), "--input", str(manifest),
                          "--output", str(out), "--batch-size", "2", "--max-new-tokens", "4", "--num-workers", "0",
                          "--device", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = read_lines(out)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert not list(tmp_path.glob("answers.jsonl.rank*"))


def test_chat_streams_answers_with_history(model_dir, tmp_path):
    files = write_input_files(tmp_path)
    proc = cli("chat", "--model", str(model_dir), "--image", str(tmp_path / files["image"]["path"]),
               "--max-new-tokens", "6", "--temperature", "0", stdin=subprocess.PIPE)
    out, _ = proc.communicate("What is it?\nAnd the colour?\n/reset\n/quit\n", timeout=120)
    assert proc.returncode == 0, out
    assert "OneLLM chat:" in out and "inputs: image." in out and out.count("> ") >= 4 and "(history cleared)" in out


def test_loaders_work_after_loading_a_model_in_a_fresh_process(model_dir, tmp_path):
    """Regression: a library first imported inside the meta-device context of from_pretrained (torchaudio's kaldi
    module keeps a module-level tensor) must not end up with meta tensors."""
    files = write_input_files(tmp_path)
    code = ("import sys; from onellm import OneLLM; OneLLM.from_pretrained(sys.argv[1]);"
            "from onellm.data.loaders import load_modality; print(tuple(load_modality('audio', sys.argv[2]).shape))")
    res = subprocess.run([sys.executable, "-c", code, str(model_dir), str(tmp_path / files["audio"]["path"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "(1, 128, 1024)" in res.stdout, res.stderr[-2000:]
