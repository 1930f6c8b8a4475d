"""`onellm bench --preset tiny --quick` runs in 1-2 minutes on 2 CPU cores and produces every field; results go
under runs/ by default."""
import json

from onellm.cli import main


def test_bench_quick_produces_every_field(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default output is relative to the working directory: runs/bench/
    assert main(["bench", "--preset", "tiny", "--quick", "--device", "cpu"]) == 0
    out = tmp_path / "runs" / "bench" / "tiny-cpu-fp32-quick.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing else in the working directory
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["quick"] is True
    assert res["peak_flops"] > 1e8
    stages = {(r["stage"], r["modality"]) for r in res["train"]}
    assert stages == {("stage1", "image"), ("stage2", "audio"), ("stage2", "point"), ("instruction", "image")}
    for r in res["train"]:
        assert r["samples_per_s"] > 0 and r["tokens_per_s"] > 0 and r["flops_per_step"] > 0
        assert 0 < r["mfu"] < 1.5 and r["peak_memory_gb"] > 0
    # the instruction step trains the LLM (its backward includes weight gradients): more FLOPs per token
    # timings on a shared CPU are noisy at this size (ratios are reported, not asserted); the work saved is exact
    fc, pd = res["feature_cache"], res["padding"]
    assert fc["ratio"] > 0 and fc["flops_per_step_cached"] < fc["flops_per_step_encoder"]
    assert pd["ratio"] > 0 and pd["tokens_fixed"] == 2 * 2 * (1 + 256) and pd["tokens_dynamic"] < pd["tokens_fixed"]
    # a ratio of timings: reported, not asserted (under load batch 4 was measured slower than batch 1)
    gen = res["generation"]
    assert set(gen) == {"1", "4"} and gen["1"]["ratio_to_batch_1"] == 1.0 and gen["4"]["ratio_to_batch_1"] > 0
    assert set(res["loading"]) == {"image", "video", "audio", "point", "depth", "normal", "imu", "fmri"}
    assert all(v > 0 for r in res["loading"].values() for v in r.values())
    assert res["point"]["batch_1_ms_per_cloud"] > 0
    assert set(res["loading_shards"]) == set(res["loading"])
    assert all(r["shards_workers_0"] > 0 and r["files_workers_0"] > 0 and
               abs(r["ratio_workers_0"] - r["shards_workers_0"] / r["files_workers_0"]) < 1e-9
               for r in res["loading_shards"].values())
    assert res["dataset_memory"]["status"].startswith("skipped with --quick")
    printed = capsys.readouterr().out
    assert "MFU" in printed and "feature cache" in printed and "point tokenizer" in printed
    assert "tar shards vs extracted files" in printed and "dataset memory: skipped with --quick" in printed
    assert f"wrote {out.relative_to(tmp_path)}" in printed


def test_default_outputs_and_device():
    from pathlib import Path

    from onellm.cli import parse_args
    from onellm.commands.bench import default_output

    args = parse_args(["bench"])
    assert args.device == "auto" and args.out is None and args.preset == "small"
    assert default_output("small", "cuda:1", "bf16", False) == Path("runs/bench/small-cuda1-bf16.json")


def test_onellm_7b_on_a_cpu_is_a_one_line_error(capsys):
    assert main(["bench", "--preset", "onellm-7b", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().startswith("onellm bench: error: the onellm-7b preset is only benchmarked")


def test_7b_feature_cache_flop_bound_matches_the_analytic_count():
    from onellm.bench import feature_cache_flop_bound

    res = feature_cache_flop_bound(text_lens=(16, 64))
    # ViT-L/14 at 224: 257 tokens x 24 layers x (24 d^2 matmuls + 4 T d attention), d = 1024, plus the patch conv
    d, t, layers = 1024, 257, 24
    analytic = layers * (24 * d * d * t + 4 * t * t * d) + 2 * (3 * 14 * 14) * d * 256
    short, long = res["caption_tokens"]["16"], res["caption_tokens"]["64"]
    assert abs(short["clip"] - analytic) / analytic < 0.01
    # a frozen LLM still costs forward + input-gradient backward, ~4 x 6.74e9 FLOPs per position
    assert 3.5 * 6.74e9 * (1 + 30 + 2 + 16) < short["llm"] < 4.5 * 6.74e9 * (1 + 30 + 2 + 16)
    assert 1.0 < long["bound"] < short["bound"] < 1.15  # why a cache cannot give 3x on a frozen-LLM stage
