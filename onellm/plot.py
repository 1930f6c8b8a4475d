"""Training curves as PNG: ``onellm plot RUN_DIR [RUN_DIR ...]`` and the quickstart's ``loss_curves.png``.

:func:`read_metrics` reads a run's ``metrics.jsonl`` (the rows :class:`onellm.training.logger.MetricLogger`
writes: one per optimizer step); :func:`run_panels` turns runs into panels (loss, loss per modality, lr, grad norm,
samples/s, tokens/s; one line per run, several runs overlaid); :func:`draw` draws any panels into one PNG (matplotlib,
Agg backend: no display needed) written through ``onellm.io`` (atomic, the umask's mode) and returns what the
figure holds, read back from its lines, so callers and tests see exactly what was plotted.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

METRICS_FILE = "metrics.jsonl"
# panel title -> (metrics key, y label); "loss by modality" gathers every "loss/<modality key>" column
RUN_PANELS: tuple[tuple[str, str, str], ...] = (
    ("loss", "loss", "loss"),
    ("loss by modality", "loss/", "loss"),
    ("learning rate", "lr", "lr"),
    ("grad norm", "grad_norm", "global grad norm"),
    ("samples/s", "samples_per_s", "samples/s"),
    ("tokens/s", "tokens_per_s", "tokens/s"),
)
LINESTYLES = ("-", "--", ":", "-.")

Series = tuple[list[float], list[float]]  # (x, y)
Panels = dict[str, dict[str, Series]]  # panel title -> line label -> (x, y)


def metrics_path(run: str | Path) -> Path:
    """``RUN_DIR/metrics.jsonl``, or the file itself when given one."""
    run = Path(run)
    path = run if run.is_file() else run / METRICS_FILE
    if not path.is_file():
        if not run.exists():
            raise FileNotFoundError(f"{run}: no such run directory")
        raise FileNotFoundError(f"{path}: not found (is {run} a training run's output_dir?)")
    return path


def read_metrics(run: str | Path) -> list[dict]:
    """The rows of a run, one per step in step order (the first row of a step wins, as a resumed run keeps it);
    torn or foreign lines (a killed run's last line) are skipped."""
    path = metrics_path(run)
    rows: dict[int, dict] = {}
    for raw in path.read_bytes().splitlines():
        try:
            row = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        step = row.get("step") if isinstance(row, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step not in rows:
            rows[step] = row
    if not rows:
        raise ValueError(f"{path}: no metrics rows yet (the run has not finished a step)")
    return [rows[s] for s in sorted(rows)]


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def column(rows: Sequence[Mapping], key: str) -> Series:
    """(steps, values) of ``key`` over the rows that have a finite number for it."""
    xs, ys = [], []
    for row in rows:
        value = _number(row.get(key))
        if value is not None:
            xs.append(float(row["step"]))
            ys.append(value)
    return xs, ys


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, de-biased at the start (``weight`` 0: unchanged)."""
    if weight <= 0:
        return list(values)
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = last * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out


def run_labels(runs: Sequence[str | Path]) -> list[str]:
    """Short distinct names: the run folder's name, with as many parent folders as it takes to tell them apart."""
    paths = [Path(r).resolve() for r in runs]
    paths = [p.parent if p.is_file() else p for p in paths]
    depth = 1
    while True:
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.parts) for p in paths):
            return labels
        depth += 1


def run_panels(runs: Mapping[str, Sequence[Mapping]], smoothing: float = 0.0) -> Panels:
    """Panels of :data:`RUN_PANELS` for ``{label: rows}``; lines are labelled by run (and modality). ``smoothing``
    (see :func:`smooth`) applies to every curve but the learning rate."""
    panels: Panels = {}
    several = len(runs) > 1
    for title, key, _ in RUN_PANELS:
        weight = 0.0 if key == "lr" else smoothing
        lines: dict[str, Series] = {}
        for label, rows in runs.items():
            if key.endswith("/"):  # one line per "loss/<modality key>" column
                for k in sorted({k for row in rows for k in row if k.startswith(key)}):
                    xs, ys = column(rows, k)
                    name = k[len(key):]
                    lines[f"{label}: {name}" if several else name] = (xs, smooth(ys, weight))
            else:
                xs, ys = column(rows, key)
                if xs:
                    lines[label] = (xs, smooth(ys, weight))
        panels[title] = lines
    return panels


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display, in a DataLoader-free batch job, over ssh
    import matplotlib.pyplot as plt

    return plt


def draw(panels: Mapping[str, Mapping[str, Series]], path: str | Path, ylabels: Mapping[str, str] | None = None,
         ncols: int | None = None, xlabel: str = "step", title: str | None = None, dpi: int = 110,
         styles: Mapping[str, Mapping[str, object]] | None = None) -> Panels:
    """Draw ``{panel: {line label: (x, y)}}`` into one PNG at ``path`` (atomic write, the umask's mode).

    Returns the figure's data as drawn, read back from its lines (``{panel: {label: (x, y)}}``). ``styles`` maps a
    line label to matplotlib line keywords (colour, linestyle); panels without lines say "no data".
    """
    from .io import atomic_write_bytes

    plt = _pyplot()
    names = list(panels)
    ncols = ncols or len(names)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    drawn: Panels = {}
    try:
        for k, ax in enumerate(axes.flat):
            if k >= len(names):
                ax.set_visible(False)
                continue
            name = names[k]
            for label, (xs, ys) in panels[name].items():
                ax.plot(xs, ys, lw=1, label=label, **dict((styles or {}).get(label, {})))
            ax.set_title(name, fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            if ylabels and name in ylabels:
                ax.set_ylabel(ylabels[name], fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3, lw=0.5)
            if not panels[name]:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, fontsize=8,
                        color="grey")
            elif len(panels[name]) > 1:
                ax.legend(fontsize=6, frameon=False)
            drawn[name] = {line.get_label(): ([float(v) for v in line.get_xdata()],
                                              [float(v) for v in line.get_ydata()]) for line in ax.get_lines()}
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return drawn


def default_output(runs: Sequence[str | Path]) -> Path:
    """One run: ``RUN_DIR/curves.png``; several: ``runs/plots/<label>_vs_<label>....png`` (under the git-ignored
    ``runs/`` of the working directory)."""
    if len(runs) == 1:
        run = Path(runs[0])
        return (run.parent if run.is_file() else run) / "curves.png"
    name = "_vs_".join(label.replace("/", "-") for label in run_labels(runs))
    if len(name) > 120:
        import hashlib

        name = name[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return Path("runs") / "plots" / f"{name}.png"


def plot_runs(runs: Sequence[str | Path], out: str | Path | None = None, smoothing: float = 0.0) -> tuple[Path, Panels,
                                                                                                          dict]:
    """Curves of training runs overlaid in one PNG; returns (path, the figure's data, {label: rows})."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    labels = run_labels(runs)
    data = {label: read_metrics(run) for label, run in zip(labels, runs)}
    panels = run_panels(data, smoothing)
    colours = {label: f"C{k % 10}" for k, label in enumerate(labels)}
    styles: dict[str, dict[str, object]] = {label: {"color": colours[label]} for label in labels}
    modality_keys = sorted({k for rows in data.values() for row in rows for k in row if k.startswith("loss/")})
    for label in labels:  # by modality: the colour is the modality's, the line style the run's
        for j, key in enumerate(modality_keys):
            name = key[len("loss/"):]
            line = f"{label}: {name}" if len(labels) > 1 else name
            styles[line] = {"color": f"C{j % 10}", "linestyle": LINESTYLES[labels.index(label) % len(LINESTYLES)],
                            "marker": ".", "markersize": 3}  # a modality trains on some steps only: show them
    path = Path(out) if out is not None else default_output(runs)
    drawn = draw(panels, path, ylabels={t: y for t, _, y in RUN_PANELS}, ncols=3,
                 title=None if len(labels) == 1 else "  vs  ".join(labels), styles=styles)
    return path, drawn, data


def summary_lines(data: Mapping[str, Sequence[Mapping]]) -> Iterable[str]:
    """One line per run: steps, first/last/min loss, mean throughput."""
    for label, rows in data.items():
        _, losses = column(rows, "loss")
        _, sps = column(rows, "samples_per_s")
        _, tps = column(rows, "tokens_per_s")
        loss = (f"loss {losses[0]:.4f} -> {losses[-1]:.4f} (min {min(losses):.4f})" if losses else "no loss")
        speed = (f", {sum(sps) / len(sps):.1f} samples/s, {sum(tps) / len(tps):.0f} tokens/s on average"
                 if sps and tps else "")
        yield f"{label}: {len(rows)} steps (last {rows[-1]['step']}), {loss}{speed}"
