"""``onellm infer --engine vllm`` / ``onellm eval --engine vllm`` against the HF engine (CPU, fp32, greedy):
the same answers, token for token, the same resume guarantees and the same error lines.

The HF side comes from the main environment (``make_fixtures.py``: ``onellm infer`` / ``onellm eval`` with
``--temperature 0 --dtype fp32``). In-process tests reuse the session's engine (the CLI's engine construction is
replaced by it); the kill / resume and data-parallel tests start real ``onellm infer --engine vllm`` processes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODALITIES = ["image", "video", "audio", "point", "depth", "normal", "imu", "fmri"]


def read_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def hf_answers(fixtures) -> dict[str, str]:
    return {e["id"]: e["hf_answer"] for e in fixtures["requests"]}


@pytest.fixture
def recorded(engine, monkeypatch):
    """Every ``engine.generate`` call's requests and token ids, in order; the CLI's engine construction returns
    the session's engine."""
    import onellm.inference as inference

    calls = []
    original = type(engine).generate

    def generate(self, requests, gen=None, seed=None, use_tqdm=False):
        out = original(self, requests, gen, seed=seed, use_tqdm=use_tqdm)
        calls.append((list(requests), out.token_ids))
        return out

    monkeypatch.setattr(type(engine), "generate", generate)
    monkeypatch.setattr(inference, "vllm_engine", lambda model_dir, gen=None, **options: engine)
    return calls


def test_infer_cli_vllm_equals_hf_token_for_token(engine, fixtures, recorded, tmp_path):
    """`onellm infer --engine vllm` on the 65 requests (every modality, video + audio, a mixed batch of 64 with
    inputs, one text-only): every answer and every generated token equal the HF engine's; one engine call per chunk."""
    from onellm.cli import main

    entries = fixtures["requests"]
    mods = [tuple(e["modalities"]) for e in entries]
    assert all(sum(m == (x,) for m in mods) >= 2 for x in MODALITIES)
    assert ("video", "audio") in mods and sum(bool(m) for m in mods) == 64 and len(set(mods)) >= 10
    out = tmp_path / "answers.jsonl"
    assert main(["infer", "--engine", "vllm", "--model", fixtures["model_dir"], "--input", fixtures["manifest"],
                 "--output", str(out), "--temperature", "0", "--max-new-tokens", str(fixtures["max_new_tokens"]),
                 "--dtype", "fp32", "--chunk-size", "48", "--batch-size", "8", "--num-workers", "2"]) == 0
    rows = read_lines(out)
    assert sorted(r["id"] for r in rows) == sorted(e["id"] for e in entries)
    assert {r["id"]: r["answer"] for r in rows} == hf_answers(fixtures)
    assert [len(reqs) for reqs, _ in recorded] == [48, 17]  # 65 requests: two calls, all of a chunk at once
    ids = [t for _, token_ids in recorded for t in token_ids]
    by_id = {e["id"]: e for e in entries}
    wrong = [r["id"] for r, t in zip(rows, ids) if by_id[r["id"]]["hf_token_ids"] != t]
    assert not wrong, f"token ids differ from HF for {wrong}"
    # the prompts handed to vLLM are the HF processor's input_ids (blocks expanded), the items loaded tensors
    reqs = [r for reqs, _ in recorded for r in reqs]
    assert [r["prompt_token_ids"] for r in reqs] == [by_id[r["id"]]["hf_input_ids"] for r in rows]
    assert all(isinstance(x, __import__("torch").Tensor) for r in reqs for v in r.get("multi_modal_data", {}).values()
               for x in v)


def test_corrupt_inputs_get_error_lines_and_the_rest_is_answered(engine, fixtures, recorded, tmp_path):
    """Corrupt, empty and missing files become the same error lines as with the HF engine (they fail in the loader
    workers, before the engine); every other request gets the HF answer."""
    from onellm.cli import main

    out = tmp_path / "answers.jsonl"
    code = main(["infer", "--engine", "vllm", "--model", fixtures["model_dir"], "--input",
                 fixtures["corrupt_manifest"], "--output", str(out), "--temperature", "0", "--max-new-tokens",
                 str(fixtures["max_new_tokens"]), "--dtype", "fp32", "--num-workers", "2", "--batch-size", "2"])
    assert code == 0
    got = {r["id"]: r for r in read_lines(out)}
    want = {r["id"]: r for r in read_lines(fixtures["hf_corrupt"])}
    assert sorted(got) == sorted(want)
    for rid in fixtures["corrupt_ids"]:
        assert "error" in got[rid] and got[rid]["error"] == want[rid]["error"], rid
    answered = [rid for rid in want if rid not in fixtures["corrupt_ids"]]
    assert answered and all(got[rid]["answer"] == want[rid]["answer"] for rid in answered)
    assert sum(len(reqs) for reqs, _ in recorded) == len(answered)  # nothing of a bad request reached the engine


def test_a_request_the_engine_rejects_costs_only_itself(engine, fixtures, tmp_path, monkeypatch):
    """When vLLM rejects one request of a chunk, the chunk is retried request by request: that one gets an error
    line, the others their answers."""
    from onellm.data.manifest import read_manifest
    from onellm.generation import GenerationConfig
    from onellm.inference import run_inference

    first = {}
    for r in read_manifest(fixtures["manifest"]):  # one request per modality key: six different prompts
        first.setdefault(r.modality_key, r)
    records = list(first.values())[:6]
    by_id = {e["id"]: e for e in fixtures["requests"]}
    prompts = [by_id[r.id]["hf_input_ids"] for r in records]
    k = next(i for i, p in enumerate(prompts) if prompts.count(p) == 1)  # a prompt no other request has
    poisoned = prompts[k]
    original = type(engine).generate

    def generate(self, requests, gen=None, seed=None, use_tqdm=False):
        if any(r["prompt_token_ids"] == poisoned for r in requests):
            raise ValueError("rejected for the test")
        return original(self, requests, gen, seed=seed, use_tqdm=use_tqdm)

    monkeypatch.setattr(type(engine), "generate", generate)
    out = tmp_path / "a.jsonl"
    summary = run_inference(engine, records, out, engine="vllm", num_workers=0,
                            gen=GenerationConfig(temperature=0, max_new_tokens=fixtures["max_new_tokens"]))
    rows = {r["id"]: r for r in read_lines(out)}
    assert summary.done == 5 and summary.failed == 1
    assert rows[records[k].id] == {"id": records[k].id, "error": "rejected for the test"}
    assert all(rows[r.id]["answer"] == by_id[r.id]["hf_answer"] for i, r in enumerate(records) if i != k)


def test_eval_vllm_equals_hf_predictions(engine, fixtures, recorded, tmp_path):
    """`onellm eval --engine vllm --benchmark synth` answers like the HF engine: same predictions, same scores."""
    from onellm.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "--engine", "vllm", "--model", fixtures["model_dir"], "--benchmark", "synth", "--data",
                 fixtures["world"], "--output", str(out), "--limit", "2", "--temperature", "0", "--max-new-tokens",
                 str(fixtures["max_new_tokens"]), "--num-workers", "0", "--dtype", "fp32"]) == 0
    hf = Path(fixtures["eval_hf"]) / "synth"
    got, want = read_lines(out / "synth" / "predictions.jsonl"), read_lines(hf / "predictions.jsonl")
    assert len(got) == 16
    strip = lambda rows: {r["id"]: (r.get("answer"), r.get("gt")) for r in rows}  # noqa: E731
    assert strip(got) == strip(want)
    m_got = json.loads((out / "synth" / "metrics.json").read_text())
    m_want = json.loads((hf / "metrics.json").read_text())
    assert m_got["metrics"] == m_want["metrics"] and m_got["n"] == m_want["n"] == 16


def test_sampling_seeds_are_per_request(engine, fixtures, tmp_path):
    """Sampled answers depend on the seed and the request only: the same run in other chunk sizes gives the same
    lines, another seed other lines (temperature 1 so that the sharpened tiny model really samples)."""
    from onellm.data.manifest import read_manifest
    from onellm.generation import GenerationConfig
    from onellm.inference import run_inference

    records = read_manifest(fixtures["manifest"])[:12]
    gen = GenerationConfig(max_new_tokens=16, temperature=1.0, top_p=0.75)
    answers = []
    for chunk, seed in ((12, 0), (5, 0), (12, 1)):
        out = tmp_path / f"{chunk}-{seed}.jsonl"
        run_inference(engine, records, out, engine="vllm", gen=gen, num_workers=0,
                      engine_options={"chunk_size": chunk, "seed": seed})
        answers.append({r["id"]: r["answer"] for r in read_lines(out)})
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


# --------------------------------------------------------------------------------------------------------------
# real `onellm infer --engine vllm` processes

def onellm(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "onellm.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_infer_vllm_killed_mid_run_resumes_without_loss_or_duplicates(fixtures, tmp_path):
    """SIGKILL while `onellm infer --engine vllm` writes (chunks of 8), a torn last line, then the same command
    again: every request answered once, the lines written before the kill kept as they were, answers = HF's."""
    out = tmp_path / "answers.jsonl"
    args = ["infer", "--engine", "vllm", "--model", fixtures["model_dir"], "--input", fixtures["manifest"],
            "--output", str(out), "--temperature", "0", "--max-new-tokens", str(fixtures["max_new_tokens"]),
            "--dtype", "fp32", "--chunk-size", "8", "--num-workers", "1", "--kv-cache-gib", "1"]
    proc = onellm(*args)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and (not out.exists()
                                                               or len(out.read_text().splitlines()) < 8):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    log, _ = proc.communicate()
    assert out.exists(), log[-3000:]
    partial = out.read_text().splitlines()
    n = len(fixtures["requests"])
    assert 8 <= len(partial) < n, f"the run should have been killed mid-way ({len(partial)} lines)\n{log[-2000:]}"
    with out.open("a") as f:
        f.write('{"id": "torn-li')  # a kill mid-write leaves a torn last line
    again = onellm(*args)
    log, _ = again.communicate(timeout=900)
    assert again.returncode == 0, log[-3000:]
    assert f"{len(partial)} already in" in log
    rows = read_lines(out)
    assert sorted(r["id"] for r in rows) == sorted(e["id"] for e in fixtures["requests"])  # no loss, no duplicate
    assert [json.loads(line)["id"] for line in partial] == [r["id"] for r in rows[:len(partial)]]
    assert {r["id"]: r["answer"] for r in rows} == hf_answers(fixtures)


def test_infer_vllm_data_parallel_two_ranks(fixtures, tmp_path):
    """`--data-parallel-size 2`: two ranks (torch.distributed.run), each with its own engine and half of the
    requests, merged into one output equal to the HF engine's."""
    out = tmp_path / "answers.jsonl"
    entries = [e for e in fixtures["requests"]][:24]
    manifest = tmp_path / "m.jsonl"
    rows = [json.loads(line) for line in Path(fixtures["manifest"]).read_text().splitlines()][:24]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env_extra = {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "onellm.cli", "infer", "--engine", "vllm", "--data-parallel-size",
                           "2", "--model", fixtures["model_dir"], "--input", str(manifest), "--output", str(out),
                           "--temperature", "0", "--max-new-tokens", str(fixtures["max_new_tokens"]), "--dtype",
                           "fp32", "--num-workers", "0", "--kv-cache-gib", "1"],
                          cwd=REPO, env={**os.environ, **env_extra}, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    got = read_lines(out)
    assert sorted(r["id"] for r in got) == sorted(e["id"] for e in entries)
    assert {r["id"]: r["answer"] for r in got} == {e["id"]: e["hf_answer"] for e in entries}
    assert not list(tmp_path.glob("answers.jsonl.rank*")) and not list(tmp_path.glob("*.lock*"))
