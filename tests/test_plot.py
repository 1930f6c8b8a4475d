"""``onellm plot``: the PNG holds exactly the curves of ``metrics.jsonl`` (read back from the figure), runs overlay,
files follow the umask; the quickstart's loss curves are drawn by the same code; a real training run's metrics
(with TensorBoard on, as the tiny recipes have it) plot."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from onellm.cli import main
from onellm.plot import draw, plot_runs, read_metrics, run_labels, smooth

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(n: int, offset: float, modalities=("image", "audio")) -> list[dict]:
    rows = []
    for step in range(1, n + 1):
        key = modalities[step % len(modalities)]
        loss = 6.0 - 0.1 * step + offset
        rows.append({"step": step, "loss": loss, "lr": 1e-3 * step / n, "grad_norm": None if step == 2 else 1.0 / step,
                     "samples_per_s": 10.0 + step, "tokens_per_s": 100.0 * step, "step_s": 0.1,
                     "elapsed_s": 0.1 * step, "peak_memory_gb": 0.5, f"loss/{key}": loss})
    return rows


def _write_run(directory: Path, rows: list[dict], extra_lines: list[str] = ()) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    (directory / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def test_the_figure_holds_exactly_the_metrics(tmp_path):
    a_rows, b_rows = _rows(6, 0.0), _rows(4, 0.5, modalities=("video",))
    # a resumed run's duplicate step (the first row wins) and a killed run's torn last line are not plotted
    a = _write_run(tmp_path / "exp1" / "stage1", a_rows, [json.dumps({**a_rows[2], "loss": 99.0}), '{"step": 7, "lo'])
    b = _write_run(tmp_path / "exp2" / "stage1", b_rows)
    path, drawn, data = plot_runs([a, b], tmp_path / "out" / "cmp.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    labels = ["exp1/stage1", "exp2/stage1"]  # same folder names: told apart by their parents
    assert list(data) == labels and data["exp1/stage1"] == a_rows
    for label, rows in zip(labels, (a_rows, b_rows)):
        steps = [float(r["step"]) for r in rows]
        assert drawn["loss"][label] == (steps, [r["loss"] for r in rows])
        assert drawn["learning rate"][label] == (steps, [r["lr"] for r in rows])
        assert drawn["samples/s"][label] == (steps, [r["samples_per_s"] for r in rows])
        assert drawn["tokens/s"][label] == (steps, [r["tokens_per_s"] for r in rows])
        kept = [r for r in rows if r["grad_norm"] is not None]  # steps without a grad norm are left out
        assert drawn["grad norm"][label] == ([float(r["step"]) for r in kept], [r["grad_norm"] for r in kept])
    by_modality = drawn["loss by modality"]
    assert set(by_modality) == {"exp1/stage1: audio", "exp1/stage1: image", "exp2/stage1: video"}
    image = [r for r in a_rows if "loss/image" in r]
    assert by_modality["exp1/stage1: image"] == ([float(r["step"]) for r in image], [r["loss/image"] for r in image])


def test_plot_command_writes_png_with_the_umask_mode(tmp_path, capsys):
    run = _write_run(tmp_path / "run", _rows(5, 0.0))
    old = os.umask(0o027)
    try:
        assert main(["plot", str(run), "--out", str(tmp_path / "plots" / "new" / "curves.png")]) == 0
    finally:
        os.umask(old)
    out = tmp_path / "plots" / "new" / "curves.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert out.stat().st_mode & 0o777 == 0o640  # onellm.io: the umask's mode, not tempfile's 0600
    assert (tmp_path / "plots" / "new").stat().st_mode & 0o777 == 0o750
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    printed = capsys.readouterr().out
    assert "run: 5 steps" in printed and f"wrote {out}" in printed


def test_default_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = _write_run(tmp_path / "a", _rows(3, 0.0)), _write_run(tmp_path / "b", _rows(3, 0.1))
    assert main(["plot", str(a)]) == 0
    assert (a / "curves.png").read_bytes()[:8] == PNG_MAGIC  # one run: next to its metrics
    assert main(["plot", str(a), str(b / "metrics.jsonl")]) == 0  # a metrics file works as well as its folder
    assert (tmp_path / "runs" / "plots" / "a_vs_b.png").is_file()  # several: under runs/ (git-ignored)
    capsys.readouterr()


def test_smoothing_is_tensorboards_and_spares_the_learning_rate(tmp_path):
    assert smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])  # de-biased: no ramp from 0
    assert smooth([1.0, 0.0], 0.5) == pytest.approx([1.0, 1 / 3])
    rows = _rows(6, 0.0)
    run = _write_run(tmp_path / "r", rows)
    _, drawn, _ = plot_runs([run], tmp_path / "s.png", smoothing=0.6)
    assert drawn["loss"]["r"][1] == pytest.approx(smooth([r["loss"] for r in rows], 0.6))
    assert drawn["learning rate"]["r"][1] == [r["lr"] for r in rows]
    assert main(["plot", str(run), "--smooth", "1.5"]) == 2


def test_bad_runs_are_one_line_errors(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"onellm plot: error: {tmp_path / 'missing'}: no such run directory"
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "metrics.jsonl: not found" in capsys.readouterr().err
    _write_run(tmp_path / "torn", [], ['{"step": 1, "lo'])
    assert main(["plot", str(tmp_path / "torn")]) == 2
    assert "no metrics rows yet" in capsys.readouterr().err


def test_labels_take_as_many_parents_as_needed(tmp_path):
    assert run_labels([tmp_path / "x" / "s1", tmp_path / "y" / "s1", tmp_path / "y" / "s2"]) == ["x/s1", "y/s1", "y/s2"]
    assert run_labels([tmp_path / "a"]) == ["a"]


def test_quickstart_loss_curves_use_the_shared_code(tmp_path, monkeypatch):
    import onellm.plot
    from onellm.quickstart.report import _plot

    calls = []
    real = onellm.plot.draw
    monkeypatch.setattr(onellm.plot, "draw", lambda panels, path, **kw: calls.append(panels) or real(panels, path, **kw))
    curves = {"language model": [5.0, 4.0, 3.5], "CLIP": [2.0, 1.0], "stage1": [6.0, 5.5, 5.0, 4.0]}
    _plot(curves, tmp_path / "loss_curves.png")
    assert (tmp_path / "loss_curves.png").read_bytes()[:8] == PNG_MAGIC
    assert calls == [{name: {name: ([float(k) for k in range(1, len(v) + 1)], v)} for name, v in curves.items()}]


def test_draw_returns_what_it_drew_and_marks_empty_panels(tmp_path):
    drawn = draw({"one": {"x": ([1.0, 2.0], [3.0, 4.0])}, "none": {}}, tmp_path / "d.png", ncols=3)
    assert drawn == {"one": {"x": ([1.0, 2.0], [3.0, 4.0])}, "none": {}}


def test_a_real_training_run_plots(model_dir, tmp_path, capsys):
    """The tiny stage I recipe as shipped (TensorBoard on), three steps: metrics.jsonl rows carry the throughput and
    timing columns, the log lines carry elapsed / ETA, and its curves plot."""
    from helpers import write_input_files

    files = write_input_files(tmp_path / "media")
    manifest = tmp_path / "media" / "alignment.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"i{k}", "inputs": [files["image"]], "caption": "a red square"})
                                + "\n" for k in range(8)))
    recipe = Path(__file__).resolve().parents[1] / "train" / "recipes" / "tiny_stage1_image.yaml"
    out = tmp_path / "run"
    assert main(["train", str(recipe), f"model={model_dir}", f"output_dir={out}", f"datasets.0.manifest={manifest}",
                 "max_steps=3", "num_workers=0", "micro_batch=4", "log_every=1"]) == 0
    printed = capsys.readouterr().out
    step_lines = [l for l in printed.splitlines() if l.startswith("step ")]
    assert len(step_lines) == 3 and all("samples/s" in l and "tok/s" in l and " elapsed " in l and " eta " in l
                                        for l in step_lines)
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["samples_per_s"] > 0 and r["tokens_per_s"] > 0 and r["step_s"] > 0 and "loss/image" in r
               for r in rows)
    assert [r["elapsed_s"] for r in rows] == sorted(r["elapsed_s"] for r in rows)
    _, drawn, _ = plot_runs([out], tmp_path / "c.png")
    assert drawn["loss"]["run"] == ([1.0, 2.0, 3.0], [r["loss"] for r in rows])
    assert drawn["loss by modality"]["image"][1] == [r["loss/image"] for r in rows]


def test_log_lines_go_above_the_progress_bar(tmp_path, capsys):
    import types

    from onellm.training.logger import MetricLogger, format_duration

    recipe = types.SimpleNamespace(log_every=2, report_to=[], source=None)
    (tmp_path / "a").mkdir()
    quiet = MetricLogger(tmp_path / "a", recipe, True, 4, progress=False)
    assert quiet.bar is None and quiet.wrap_log(print) is print
    shown = MetricLogger(tmp_path, recipe, True, 4, progress=True)
    mine = lambda m: None  # noqa: E731
    assert shown.wrap_log(mine) is mine and shown.wrap_log(print) is not print
    shown.wrap_log(print)("skipped sample x")
    for step in range(1, 5):
        shown.log_step(step, 5.0 - step, {"image": 5.0 - step}, 1e-3, 0.5, samples=8, tokens=80, seconds=0.5)
    shown.close()
    quiet.close()
    captured = capsys.readouterr()
    lines = [l for l in captured.out.splitlines() if l.startswith("step ")]
    assert [l.split()[1] for l in lines] == ["1/4", "2/4", "4/4"]  # the first, every log_every and the last
    assert all("16.0 samples/s 160 tok/s" in l and " elapsed " in l and " eta " in l for l in lines)
    assert "skipped sample x" in captured.out and "train:" in captured.err  # the bar is on stderr
    assert format_duration(3725) == "1:02:05" and format_duration(65.4) == "1:05"
