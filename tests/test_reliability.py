"""Reliability under faults and hostile input (issue 16): hostile checkpoints never run code, bad output lines never
cost valid answers, batches with nothing to learn take no optimizer step, damaged checkpoints fall back, metrics and
summaries cover the whole run, one-line errors, one writer per output, the umask's file modes."""
import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from onellm.checkpoint import CheckpointError
from onellm.cli import main
from onellm.training import load_recipe, train
from onellm.training.checkpoints import STATE_FILE, complete_checkpoints, record_files, verify

from helpers import synth_world, write_input_files

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "DS_ACCELERATOR": "cpu",
       "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR",
                                              str(Path.home() / ".cache" / "onellm-torch-extensions"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return synth_world(tmp_path_factory, 6, 0)


# -- helpers ---------------------------------------------------------------------------------------------------
class Payload:
    """A pickle that runs ``touch <marker>`` when unpickled by a plain (not weights-only) loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> None:
    path.unlink(missing_ok=True)
    torch.save({"state": Payload(marker), "weights": torch.zeros(2)}, path)


def restamp(ckpt: Path) -> None:
    """Make a tampered checkpoint self-consistent (sizes and checksums recorded for its current files), as a
    hostile one handed over would be: then only the loader stands between the payload and its execution."""
    state = json.loads((ckpt / STATE_FILE).read_text())
    state["files"] = record_files(ckpt)
    (ckpt / STATE_FILE).write_text(json.dumps(state))


def recipe_file(path: Path, world: Path, model_dir: Path, out: Path, **extra) -> Path:
    data = {"model": str(model_dir), "output_dir": str(out), "task": "alignment",
            "datasets": [{"manifest": str(world / "alignment.jsonl"), "modalities": ["image", "audio", "fmri"]}],
            "trainable": {"upm": True, "tokenizers": True, "llm": "frozen"},
            "optimizer": {"lr": 1e-3, "min_lr": 1e-4, "weight_decay": 0.1}, "schedule": {"warmup_steps": 1},
            "micro_batch": 2, "accumulation": 1, "max_steps": 6, "precision": "fp32", "num_workers": 0,
            "save_every": 3, "log_every": 100, "report_to": [], **extra}
    path.write_text(yaml.safe_dump(data))
    return path


def quiet(*_):
    pass


def metrics_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


class OptimizerSteps:
    """Counts optimizer steps (every torch optimizer, via torch's global post-step hook)."""

    def __enter__(self):
        self.count = 0
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.handle = register_optimizer_step_post_hook(self._hook)
        return self

    def _hook(self, *_):
        self.count += 1

    def __exit__(self, *_):
        self.handle.remove()


class FailingLoads:
    """Input loading fails on the given (0-based) load calls counted from the last ``fail`` (num_workers=0 keeps
    every load in this process)."""

    def __init__(self, monkeypatch):
        from onellm.data import datasets

        self.calls, self.seen = set(), 0
        original = datasets.ManifestDataset.load_inputs

        def load_inputs(ds, record):
            from onellm.data.errors import InputError

            n, self.seen = self.seen, self.seen + 1
            if n in self.calls:
                raise InputError(record.inputs[0].path if record.inputs else None, "planted failure")
            return original(ds, record)

        monkeypatch.setattr(datasets.ManifestDataset, "load_inputs", load_inputs)

    def fail(self, calls: set[int]) -> None:
        self.calls, self.seen = set(calls), 0


# -- 1. hostile checkpoints never run code ---------------------------------------------------------------------
def test_the_payload_is_real(tmp_path):
    marker = tmp_path / "ran"
    plant(tmp_path / "p.pt", marker)
    torch.load(tmp_path / "p.pt", weights_only=False)  # what checkpoints.py did before: the code runs
    assert marker.exists()


def test_resume_reads_no_pickle_and_refuses_planted_payloads(world, model_dir, tmp_path):
    out = tmp_path / "run"
    path = recipe_file(tmp_path / "r.yaml", world, model_dir, out, max_steps=2, save_every=2)
    train(load_recipe(path), log=quiet)
    ckpt = out / "checkpoints" / "step-000002"
    assert {p.name for p in ckpt.iterdir()} == {"state.json", "trainable.safetensors", "optimizer.safetensors",
                                                "rng-rank0.safetensors"}
    for p in ckpt.iterdir():  # no pickle: safetensors (which start with a header length) or JSON
        assert not p.read_bytes()[:2] == b"\x80\x04" and not p.read_bytes().startswith(b"PK")
    marker = tmp_path / "ran"
    # every file a resume reads, in turn, replaced by a payload (the legacy .pt names too)
    for target, remove in [("optimizer.safetensors", None), ("rng-rank0.safetensors", None),
                           ("trainable.safetensors", None), ("optimizer.pt", "optimizer.safetensors"),
                           ("rng-rank0.pt", "rng-rank0.safetensors")]:
        hostile = tmp_path / f"hostile-{target}"
        subprocess.run(["cp", "-r", str(ckpt), str(hostile)], check=True)
        if remove:
            (hostile / remove).unlink()
        plant(hostile / target, marker)
        restamp(hostile)
        with pytest.raises(CheckpointError) as err:
            train(load_recipe(path, ["max_steps=3", f"resume={hostile}"]), log=quiet)
        assert target in str(err.value)
        assert not marker.exists(), f"the payload in {target} ran"
    # the untouched checkpoint still resumes
    result = train(load_recipe(path, ["max_steps=3"]), log=quiet)
    assert result.steps == 3 and len(result.losses) == 3


def test_init_clip_adapters_and_feature_caches_never_unpickle(model_dir, tmp_path, capsys):
    from onellm import OneLLM
    from onellm.data.errors import InputError
    from onellm.features import FeatureStore

    marker = tmp_path / "ran"
    plant(tmp_path / "ViT-L-14.pt", marker)
    code = main(["init", "--preset", "tiny", "--out", str(tmp_path / "m"), "--clip", str(tmp_path / "ViT-L-14.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ViT-L-14.pt" in err[0] and "refused" in err[0], err
    assert not marker.exists() and not (tmp_path / "m").exists()

    adapter = tmp_path / "adapter"  # an adapter directory whose weights are a pickle
    adapter.mkdir()
    (adapter / "onellm_adapter.json").write_text(json.dumps({"format": "onellm-adapter-v1",
                                                             "base_model": str(model_dir)}))
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2,
                                                             "target_modules": ["q_proj"]}))
    plant(adapter / "adapter_model.bin", marker)
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):
        OneLLM.from_pretrained(adapter)
    assert not marker.exists()

    cache = tmp_path / "cache"  # a feature cache whose shard is a pickle
    cache.mkdir()
    (cache / "index.json").write_text(json.dumps({"model": "", "dtype": "float32",
                                                  "entries": {"a#0": "shard-00000.safetensors"}}))
    plant(cache / "shard-00000.safetensors", marker)
    with pytest.raises(InputError, match="shard-00000.safetensors"):
        FeatureStore(cache).get("a#0")
    assert not marker.exists()


def _ds_run(recipe: Path, *overrides, port: int) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", f"--master_port={port}",
            "train/train.py", str(recipe), *overrides]
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def test_deepspeed_resume_goes_through_the_weights_only_unpickler(world, model_dir, tmp_path):
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    from onellm.training.safe_state import UnsafeCheckpointError, guard_deepspeed_loads

    out = tmp_path / "ds"
    path = recipe_file(tmp_path / "r.yaml", world, model_dir, out, max_steps=2, save_every=2,
                       deepspeed=str(ROOT / "train/ds/zero2.json"))
    res = _ds_run(path, port=29641)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ckpt = out / "checkpoints" / "step-000002"
    pickles = sorted((ckpt / "ds").rglob("*.pt"))
    assert len(pickles) == 2  # model states + ZeRO optimizer partition

    class Engine:  # what guard_deepspeed_loads patches: the engine's checkpoint_engine.load
        checkpoint_engine = TorchCheckpointEngine()

    engine = Engine()
    guard_deepspeed_loads(engine)
    for f in pickles:  # DeepSpeed's real files load through the allow-list ...
        assert isinstance(engine.checkpoint_engine.load(str(f), map_location="cpu"), dict)
    marker = tmp_path / "ran"
    plant(tmp_path / "evil.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):  # ... a payload does not
        engine.checkpoint_engine.load(str(tmp_path / "evil.pt"), map_location="cpu")
    assert not marker.exists()

    res = _ds_run(path, "max_steps=3", port=29642)  # a real DeepSpeed resume through the guarded loader
    assert res.returncode == 0 and "resumed from" in res.stdout + res.stderr, res.stdout[-3000:] + res.stderr[-3000:]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 3

    hostile = tmp_path / "hostile"
    subprocess.run(["cp", "-r", str(ckpt), str(hostile)], check=True)
    plant(next(hostile.rglob("mp_rank_00_model_states.pt")), marker)
    restamp(hostile)
    res = _ds_run(path, "max_steps=4", f"resume={hostile}", port=29643)
    errors = [l for l in res.stderr.splitlines() if l.startswith("onellm train: error: ")]
    assert res.returncode != 0 and "exitcode  : 2" in res.stderr, res.stdout[-3000:] + res.stderr[-3000:]
    assert len(errors) == 1 and "refused to load" in errors[0] and "mp_rank_00_model_states.pt" in errors[0], errors
    assert not marker.exists()


# -- 2. bad lines in an output never cost valid answers ---------------------------------------------------------
def test_scan_keeps_every_valid_line_and_drops_only_a_torn_tail(tmp_path):
    from onellm.outputs import repair, scan_output

    out = tmp_path / "a.jsonl"
    lines = [b'{"id": "a", "answer": "x"}\n', b"\n", b"{garbage\n", b"null\n", b"[1, 2]\n", b'{"id": null}\n',
             b"\xff\xfe\n", b'{"id": 7, "error": "bad file"}\n', b'{"id": "b", "answer": "y"}\n', b'{"id": "c", "ans']
    out.write_bytes(b"".join(lines))
    scan = scan_output(out)
    assert scan.done == {"a", "7", "b"} and scan.answered == {"a", "b"} and scan.failed == {"7"}
    assert [n for n, _ in scan.bad_lines] == [2, 3, 4, 5, 6, 7] and scan.torn_tail
    assert out.read_bytes() == b"".join(lines)  # reading changes nothing
    repair(out, scan)
    assert out.read_bytes() == b"".join(lines[:-1])  # only the torn tail went
    out.write_bytes(b'{"id": "a", "answer": "x"}')  # complete but without its newline: kept, newline added
    scan = scan_output(out)
    assert scan.done == {"a"} and scan.missing_newline and not scan.torn_tail
    repair(out, scan)
    assert out.read_bytes() == b'{"id": "a", "answer": "x"}\n'


def requests_manifest(tmp_path, n=4, extra=()):
    files = write_input_files(tmp_path / "files")
    rows = [{"id": f"r{k}", "inputs": [files["image"]], "prompt": "What is it?"} for k in range(n)] + list(extra)
    manifest = tmp_path / "files" / "requests.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def infer_args(model_dir, manifest, out, *extra):
    return ["infer", "--model", str(model_dir), "--input", str(manifest), "--output", str(out), "--max-new-tokens",
            "3", "--temperature", "0", "--num-workers", "0", *extra]


def test_infer_resume_keeps_valid_lines_after_corrupt_ones(model_dir, tmp_path, capsys):
    manifest = requests_manifest(tmp_path, n=5)
    out = tmp_path / "answers.jsonl"
    before = [b'{"id": "r0", "answer": "EARLIER"}\n', b"{corrupt\n", b"\n", b"null\n", b"[1, 2]\n",
              b'{"id": "r1", "answer": "EARLIER"}\n', b'{"id": "r2", "answer": "EARLIER"}\n', b'{"id": "r3", "ans']
    out.write_bytes(b"".join(before))
    assert main(infer_args(model_dir, manifest, out)) == 0
    captured = capsys.readouterr()
    for n in (2, 3, 4, 5):
        assert f"line {n}:" in captured.err
    data = out.read_bytes()
    assert data.startswith(b"".join(before[:-1]))  # every earlier line kept, byte for byte (bad ones included)
    rows = [json.loads(line) for line in data.splitlines()[len(before) - 1:]]
    assert sorted(r["id"] for r in rows) == ["r3", "r4"]  # only the missing ones were answered
    assert "3 already in" in captured.out


def test_infer_rejects_bad_requests_per_request_and_resume_exit_codes(model_dir, tmp_path, capsys):
    long_prompt = "a red circle " * 16000  # ~48,000 tokens: far past max_seq_len
    manifest = requests_manifest(tmp_path, n=2, extra=[{"id": "no-prompt"},
                                                       {"id": "long", "prompt": long_prompt},
                                                       {"id": "history", "prompt": "q", "history": 5}])
    out = tmp_path / "answers.jsonl"
    assert main(infer_args(model_dir, manifest, out, "--num-workers", "1")) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"r0", "r1", "no-prompt", "long", "history"}
    assert "answer" in rows["r0"] and "answer" in rows["r1"]
    assert "needs a 'prompt'" in rows["no-prompt"]["error"]
    assert "exceeds" in rows["long"]["error"] and "positions" in rows["long"]["error"] and "answer" not in rows["long"]
    assert "error" in rows["history"]
    capsys.readouterr()
    # a later run whose only new request fails still exits 0: earlier runs answered the rest
    files = write_input_files(tmp_path / "files")
    with manifest.open("a") as f:
        f.write(json.dumps({"id": "broken", "inputs": [files["broken"]]}) + "\n")
    assert main(infer_args(model_dir, manifest, out)) == 0
    assert "broken.png" in json.loads(out.read_text().splitlines()[-1])["error"]
    # and a manifest whose every request failed exits 1, in the first run and in a rerun
    bad = tmp_path / "files" / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "inputs": [files["broken"]]}) + "\n")
    assert main(infer_args(model_dir, bad, tmp_path / "bad-out.jsonl")) == 1
    assert main(infer_args(model_dir, bad, tmp_path / "bad-out.jsonl")) == 1


def test_prompt_length_check_counts_the_packed_length(model_dir):
    """The main-process check agrees with what the dataset builds: at the limit nothing is cut, one past it is an
    error (the dataset alone would cut the prompt's ``### Assistant:`` ending and answer anyway)."""
    from onellm.data.datasets import FailedSample, RequestDataset
    from onellm.data.manifest import InputRef, Record
    from onellm.inference import request_problem
    from onellm.processing import OneLLMProcessor, PackedSample

    processor = OneLLMProcessor.from_pretrained(model_dir)
    text = Record("t", prompt="What colour is the object? " * 3)
    image = Record("i", inputs=[InputRef("image", "unused.png")], prompt=text.prompt)
    probe = RequestDataset([], processor)
    n = len(probe.text_ids(text))
    for record, length in ((text, n), (image, n + probe.block_length)):
        at_limit = RequestDataset([record], processor, max_length=length)
        assert request_problem(at_limit, record) is None
        below = RequestDataset([record], processor, max_length=length - 1)
        assert f"prompt of {length} positions" in request_problem(below, record)
    item = RequestDataset([text], processor, max_length=n)[0]
    assert isinstance(item, PackedSample) and len(item.input_ids) == n  # nothing cut at the limit
    over = RequestDataset([text], processor, max_length=n - 1)[0]  # the dataset itself never cuts a prompt either
    assert isinstance(over, FailedSample) and f"prompt of {n} positions" in over.error


# -- 3. batches with nothing to learn ----------------------------------------------------------------------------
def test_all_bad_first_batch_after_start_and_resume_takes_no_step(world, model_dir, tmp_path, monkeypatch):
    path = recipe_file(tmp_path / "r.yaml", world, model_dir, tmp_path / "run", max_steps=3, save_every=3)
    loads = FailingLoads(monkeypatch)
    loads.fail({0, 1})  # the first micro-batch of this process: both samples fail
    with OptimizerSteps() as opt:
        result = train(load_recipe(path), log=quiet)
    assert result.steps == 3 and opt.count == 3 and result.skipped_steps == 1 and result.skipped == 2
    assert metrics_steps(tmp_path / "run") == [1, 2, 3] and all(l > 1 for l in result.losses)
    loads.fail({0, 1})  # again in the next "process": the first batch after the resume
    with OptimizerSteps() as opt:
        result = train(load_recipe(path, ["max_steps=6"]), log=quiet)
    assert result.steps == 6 and opt.count == 3 and len(result.losses) == 6
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["skipped_steps"] == 2 and summary["skipped"] == 4 and len(summary["losses"]) == 6
    assert metrics_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]


def test_all_bad_batch_mid_run_moves_no_weight(world, model_dir, tmp_path, monkeypatch):
    path = recipe_file(tmp_path / "r.yaml", world, model_dir, tmp_path / "run", max_steps=3, save_every=3,
                       accumulation=1)
    snapshots = []
    from onellm.training import trainer

    original = trainer.StepPlanner.plan

    def plan(self, micro):  # weights at every planned step: the skipped one must leave them untouched
        snapshots.append({n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad})
        return original(self, micro)

    monkeypatch.setattr(trainer.StepPlanner, "plan", plan)
    FailingLoads(monkeypatch).fail({2, 3})  # the second micro-batch
    with OptimizerSteps() as opt:
        result = train(load_recipe(path), log=quiet)
    assert opt.count == 3 and result.steps == 3 and result.skipped_steps == 1 and len(snapshots) == 4
    assert all(torch.equal(snapshots[1][n], snapshots[2][n]) for n in snapshots[1])  # the skipped step
    assert not all(torch.equal(snapshots[0][n], snapshots[1][n]) for n in snapshots[0])  # a real one moves them
    assert 0.0 not in result.losses


def test_text_only_batches_with_a_frozen_llm_are_skipped(world, model_dir, tmp_path):
    rows = [json.loads(l) for l in (world / "alignment.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["inputs"][0]["modality"] == "image"]
    for r in rows:
        for i in r["inputs"]:
            i["path"] = str(world / i["path"])
    rows += [{"id": f"text-{k}", "caption": "a red circle on a grey background"} for k in range(6)]
    manifest = tmp_path / "mixed.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = recipe_file(tmp_path / "r.yaml", world, model_dir, tmp_path / "run", max_steps=6, save_every=6,
                       datasets=[{"manifest": str(manifest)}], accumulation=2)
    logs = []
    with OptimizerSteps() as opt:
        result = train(load_recipe(path), log=logs.append)
    assert result.steps == 6 and opt.count == 6 and result.skipped_batches >= 1
    assert any("nothing trains on 'text'" in l for l in logs)


def test_a_run_with_nothing_to_learn_stops_with_a_message(world, model_dir, tmp_path, capsys):
    manifest = tmp_path / "gone.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"g{k}", "inputs": [{"modality": "image", "path": f"g{k}.png"}],
                                            "caption": "a red circle"}) + "\n" for k in range(4)))
    path = recipe_file(tmp_path / "r.yaml", world, model_dir, tmp_path / "run", datasets=[{"manifest": str(manifest)}])
    err = one_line_error(capsys, ["train", str(path)], "nothing to learn", "more than an epoch")
    assert "Traceback" not in err and not (tmp_path / "run" / "checkpoints").exists()


def test_step_planner_weights_and_boundary():
    from types import SimpleNamespace

    from onellm.training.steps import StepPlanner

    planner = StepPlanner(None, SimpleNamespace(num_processes=1), 3, lambda: {"f1": "image"})
    planner._learnable = {"image": True, "text": False}
    good = {"ids": ["a"], "modality_keys": ["image"], "failed": []}
    text = {"ids": ["t"], "modality_keys": ["text"], "failed": []}
    bad = {"ids": [], "failed": [("f1", "x"), ("f2", "y")]}
    plan = planner.plan([good, bad, text])
    assert [(r.weight, r.last, r.real) for r in plan.runs] == [(3.0, True, True)]  # the mean over what runs
    assert [i for i, _ in plan.skipped] == [1, 2] and "all 2 samples failed" in plan.skipped[0][1]
    assert not planner.plan([bad, text, bad]).runs  # nothing to learn: no step at all


# -- 4, 5. damaged checkpoints fall back; metrics and summary cover the whole run ---------------------------------
def test_damaged_newest_checkpoint_falls_back_and_the_run_equals_an_uninterrupted_one(world, model_dir, tmp_path):
    straight = train(load_recipe(recipe_file(tmp_path / "a.yaml", world, model_dir, tmp_path / "a", save_every=2)),
                     log=quiet)
    out = tmp_path / "b"
    path = recipe_file(tmp_path / "b.yaml", world, model_dir, out, save_every=2)
    train(load_recipe(path), log=quiet)
    # the state of a run killed after its step-6 checkpoint, whose newest file was then damaged
    subprocess.run(["rm", "-rf", str(out / "model"), str(out / "train_summary.json")], check=True)
    ckpts = out / "checkpoints"
    assert [p.name for p in complete_checkpoints(ckpts)] == ["step-000004", "step-000006"]
    weights = ckpts / "step-000006" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (ckpts / "step-000012.bak").mkdir()  # strays that must not break resume
    (ckpts / "step-000010.tmp").mkdir()
    assert "truncated" in verify(ckpts / "step-000006") and verify(ckpts / "step-000004") is None
    logs = []
    resumed = train(load_recipe(path), log=logs.append)
    assert any("step-000006 is damaged" in l and "falling back to step-000004" in l for l in logs), logs
    assert any("resumed from" in l and "step-000004" in l for l in logs)
    a, b = load_file(str(tmp_path / "a/model/model.safetensors")), load_file(str(out / "model/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical to the uninterrupted run
    assert resumed.losses == straight.losses and len(resumed.losses) == 6
    assert metrics_steps(out) == [1, 2, 3, 4, 5, 6]  # exactly one row per step
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["losses"] == straight.losses and summary["steps"] == 6
    assert not (ckpts / "step-000010.tmp").exists() and (ckpts / "step-000012.bak").is_dir()  # ours gone, theirs kept
    # re-running the finished run says so and changes nothing
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    stamps = {p: p.stat().st_mtime_ns for p in before}
    logs = []
    again = train(load_recipe(path), log=logs.append)
    assert again.already_complete and again.losses == straight.losses and any("already complete" in l for l in logs)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert {p: p.stat().st_mtime_ns for p in before} == stamps


def test_checkpoint_files_are_fsynced_before_the_rename(world, model_dir, tmp_path, monkeypatch):
    import onellm.io
    import onellm.training.checkpoints as checkpoints

    events = []
    real_fsync, real_replace = onellm.io.fsync_file, os.replace
    real_dir = onellm.io.fsync_dir
    monkeypatch.setattr(onellm.io, "fsync_file", lambda p: (events.append(("fsync", Path(p))), real_fsync(p)))
    monkeypatch.setattr(onellm.io, "fsync_dir", lambda p: (events.append(("fsync_dir", Path(p))), real_dir(p)))
    monkeypatch.setattr(checkpoints, "fsync_dir", onellm.io.fsync_dir)
    monkeypatch.setattr(checkpoints.os, "replace",
                        lambda a, b: (events.append(("rename", Path(a), Path(b))), real_replace(a, b)))
    path = recipe_file(tmp_path / "r.yaml", world, model_dir, tmp_path / "run", max_steps=1, save_every=1)
    train(load_recipe(path), log=quiet)
    final = tmp_path / "run" / "checkpoints" / "step-000001"
    renamed = next(k for k, e in enumerate(events) if e[0] == "rename" and e[2] == final)
    synced = {e[1].name for e in events[:renamed] if e[0] == "fsync" and e[1].parent.name == "step-000001.tmp"}
    assert synced == {p.name for p in final.iterdir()}  # every file flushed to disk before the rename
    assert ("fsync_dir", final.with_name("step-000001.tmp")) in events[:renamed]  # and its folder
    assert any(e == ("fsync_dir", final.parent) for e in events[renamed:])  # the rename itself made durable


def test_metrics_of_a_killed_run_are_cut_back_to_its_checkpoint(world, model_dir, tmp_path):
    out = tmp_path / "run"
    path = recipe_file(tmp_path / "r.yaml", world, model_dir, out, max_steps=6, save_every=100)
    straight = train(load_recipe(path, ["max_steps=3", "save_every=3"]), log=quiet)  # a checkpoint at step 3
    with (out / "metrics.jsonl").open("a") as f:  # rows a killed process wrote after it (and a torn one)
        f.write('{"step": 4, "loss": 1.0}\n{"step": 5, "loss": 1.0}\n{"step": 6, "lo')
    result = train(load_recipe(path), log=quiet)
    assert metrics_steps(out) == [1, 2, 3, 4, 5, 6]
    assert result.losses[:3] == straight.losses
    assert json.loads((out / "train_summary.json").read_text())["losses"] == result.losses


# -- 7, 8, 9. one-line errors naming the file or key ---------------------------------------------------------------
def one_line_error(capsys, argv, *expected, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"onellm {argv[0]}: error: "), err
    for text in expected:
        assert text in err[0], err
    return err[0]


@pytest.fixture()
def broken_models(model_dir, tmp_path):
    out = {}
    for name in ("truncated", "badconfig", "run"):
        target = tmp_path / name if name != "run" else tmp_path / "run" / "model"
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(model_dir), str(target)], check=True)
        out[name] = target
    weights = out["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (out["badconfig"] / "config.json").write_text('{"format": "onellm-v1", "llm": {')
    out["run"] = tmp_path / "run"
    return out


def test_user_mistakes_are_one_line_naming_the_file_or_key(model_dir, world, tmp_path, capsys, broken_models):
    manifest = requests_manifest(tmp_path, n=1)
    out = tmp_path / "o.jsonl"
    one_line_error(capsys, infer_args(tmp_path / "nowhere", manifest, out), "nowhere", "no such model directory")
    one_line_error(capsys, infer_args(broken_models["run"], manifest, out), f"did you mean {broken_models['run']}/model?")
    one_line_error(capsys, infer_args(broken_models["truncated"], manifest, out), "model.safetensors", "truncated")
    one_line_error(capsys, infer_args(broken_models["badconfig"], manifest, out), "config.json", "line 1")
    one_line_error(capsys, infer_args(model_dir, tmp_path / "none.jsonl", out), "none.jsonl", "manifest not found")
    recipe = recipe_file(tmp_path / "r.yaml", world, model_dir, tmp_path / "t")
    one_line_error(capsys, ["train", str(tmp_path / "missing.yaml")], "missing.yaml", "recipe not found")
    one_line_error(capsys, ["train", str(recipe), "learnng_rate=1", "--dry-run"], "learnng_rate")
    one_line_error(capsys, ["train", str(recipe), "optimizer.lrr=1", "--dry-run"], "'lrr'", "did you mean 'lr'")
    # recipe values are validated when the recipe is read, before anything heavy (even --dry-run)
    one_line_error(capsys, ["train", str(recipe), "max_steps=abc", "--dry-run"], "max_steps", "integer", "'abc'")
    one_line_error(capsys, ["train", str(recipe), "precision=fp8", "--dry-run"], "precision", "'fp32'", "'fp8'")
    one_line_error(capsys, ["train", str(recipe), "datasets.5.manifest=x", "--dry-run"], "datasets", "1 entry")
    one_line_error(capsys, ["train", str(recipe), "micro_batch=0"], "micro_batch", "greater than or equal to 1")
    assert not (tmp_path / "t").exists()  # nothing ran


def test_non_utf8_manifest_lines_are_reported_with_their_numbers(model_dir, tmp_path, capsys):
    from onellm.data.manifest import ManifestError, read_manifest

    manifest = tmp_path / "m.jsonl"
    bad = b'{"id": "b", "prompt": "caf\xe9"}\n'  # latin-1, not UTF-8
    manifest.write_bytes(b'{"id": "a", "prompt": "q"}\n' + bad + b'{"id": "c", "prompt": "q"}\n{"id": "d", "prompt": "\xff"}\n')
    with pytest.raises(ManifestError) as err:
        read_manifest(manifest)
    assert [n for n, _ in err.value.problems] == [2, 4] and "not UTF-8" in str(err.value)
    assert main(infer_args(model_dir, manifest, tmp_path / "o.jsonl")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"onellm infer: error: {manifest}: 2 bad line(s)"
    assert f"line 2: not UTF-8 text: byte 0xe9 at column {bad.index(0xe9) + 1}" in lines[1] and "line 4" in lines[2]


def test_read_only_and_full_disk_are_one_line_naming_the_path(model_dir, tmp_path, capsys, monkeypatch):
    import onellm.outputs

    manifest = requests_manifest(tmp_path, n=1)
    out = tmp_path / "answers.jsonl"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(onellm.outputs.os, "fsync", full)  # the disk fills up while answers are written
    one_line_error(capsys, infer_args(model_dir, manifest, out), str(out), "No space left on device", "free some space")
    monkeypatch.undo()
    readonly = Path("/sys/onellm-answers.jsonl")  # sysfs refuses new files, even to root (a real OS error)
    try:
        Path("/sys/onellm-probe").touch()
    except OSError:
        pass
    else:
        Path("/sys/onellm-probe").unlink()
        pytest.skip("/sys is writable here")
    res = subprocess.run([sys.executable, "-m", "onellm.cli", *infer_args(model_dir, manifest, readonly)], cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=300)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and str(readonly) in err[0], res.stderr


def test_debug_shows_the_traceback(tmp_path):
    argv = ["infer", "--model", str(tmp_path / "nowhere"), "--input", "x.jsonl", "--output", str(tmp_path / "o")]
    plain = subprocess.run([sys.executable, "-m", "onellm.cli", *argv], cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert plain.returncode == 2 and plain.stderr.strip().count("\n") == 0 and "Traceback" not in plain.stderr
    for extra_args, extra_env in ((["--debug"], {}), ([], {"ONELLM_DEBUG": "1"})):
        res = subprocess.run([sys.executable, "-m", "onellm.cli", *extra_args, *argv], cwd=ROOT,
                             env={**ENV, **extra_env}, capture_output=True, text=True, timeout=300)
        assert res.returncode == 1 and "Traceback" in res.stderr and "x.jsonl" in res.stderr, res.stderr


# -- 10. one writer per output -------------------------------------------------------------------------------------
HOLD = ("import sys, time; from onellm.outputs import OutputLock; lock = OutputLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(300)")


def test_a_second_writer_is_refused_and_a_killed_one_releases(model_dir, tmp_path, capsys):
    from onellm.errors import OutputLockedError
    from onellm.outputs import OutputLock

    manifest = requests_manifest(tmp_path, n=2)
    out = tmp_path / "answers.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=f"PID {holder.pid}"):
            OutputLock(out).acquire()
        one_line_error(capsys, infer_args(model_dir, manifest, out), str(out), f"PID {holder.pid}")
        assert not out.exists()  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(infer_args(model_dir, manifest, out)) == 0  # the dead holder's lock went with it
    assert sorted(json.loads(l)["id"] for l in out.read_text().splitlines()) == ["r0", "r1"]
    assert not (tmp_path / "answers.jsonl.lock").exists()


def test_two_infer_processes_on_one_output_answer_each_request_once(model_dir, tmp_path):
    manifest = requests_manifest(tmp_path, n=24)
    out = tmp_path / "answers.jsonl"
    args = [sys.executable, "-m", "onellm.cli", *infer_args(model_dir, manifest, out, "--batch-size", "1")]
    args[args.index("3")] = "24"  # longer answers: the first run is likely still going when the second starts
    first = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not out.exists():
        time.sleep(0.05)
    second = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    if second.returncode == 2:  # it overlapped: refused at once, naming the writer
        assert f"PID {first.pid}" in second.stderr and len(second.stderr.strip().splitlines()) == 1, second.stderr
    else:  # it came after the first finished: it had nothing left to do
        assert second.returncode == 0 and "0 answered" in second.stdout, second.stdout + second.stderr
    ids = [json.loads(l)["id"] for l in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"r{k}" for k in range(24))  # each exactly once


# -- 11. files follow the umask ------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_follow_the_umask(world, model_dir, tmp_path, umask):
    from onellm import OneLLM
    from onellm.data.manifest import read_manifest
    from onellm.features import cache_features

    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        train(load_recipe(recipe_file(tmp_path / "r.yaml", world, model_dir, out, max_steps=2, save_every=2)),
              log=quiet)
        records = [r for r in read_manifest(world / "alignment.jsonl") if r.modality_key == "image"][:2]
        cache_features(OneLLM.from_pretrained(model_dir), records, tmp_path / "cache", num_workers=0, progress=False)
        assert main(["init", "--preset", "tiny", "--out", str(tmp_path / "init")]) == 0
    finally:
        os.umask(old)
    paths = [p for root in (out, tmp_path / "cache", tmp_path / "init") for p in root.rglob("*")]
    assert len(paths) > 15
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in paths if p.is_file()}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
    dirs = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in paths if p.is_dir()}
    assert set(dirs.values()) == {oct(0o777 & ~umask)}, dirs
