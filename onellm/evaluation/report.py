"""The result rows of ``onellm eval`` and their tables: ``results.json`` / ``results.md`` (ours beside the paper's
OneLLM-7B number and the split it is on), ``onellm eval --list`` and ``--paper-table``, the upload messages.

Every number is a percentage (docs/evaluation.md#units). A row is one benchmark on one split; under it,
``results.md`` shows one row per group its metrics break down into (``"<group>/<metric>"`` keys: synth per
modality, nocaps per domain, VQAv2 per answer type).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .benchmark import PAPER_SPLIT_NOTE, Benchmark

TABLE_HEADER = ("| benchmark | split | modality | metric | ours | paper (OneLLM-7B) | paper's split | released "
                "script's split | n |")
PREAMBLE = ("All numbers are percentages (accuracy in %, CIDEr / BLEU / ROUGE-L / METEOR x 100), as in the paper. "
            "`paper` is the released OneLLM-7B as the OneLLM paper (CVPR 2024) reports it; `released script's "
            "split` is the split of the released evaluation script (spec §5) where there is one.")


# What every row has (format_table relies on it); an earlier results.json without them is not merged.
ROW_KEYS = frozenset({"benchmark", "split", "modality", "table_metrics", "paper", "paper_split", "released",
                      "status"})


def result_row(bench: Benchmark, split: str, result: dict | None, skipped: str | None = None,
               status: str | None = None) -> dict[str, Any]:
    """One results.json row; ``status``: "ok", "skipped", "submission" (a remote split) or "not run"."""
    row = {"benchmark": bench.name, "split": split, "modality": bench.modality,
           "table_metrics": list(bench.shown_metrics), "paper": dict(bench.paper) if bench.paper else None,
           "paper_split": bench.paper_split, "paper_table": bench.paper_table, "released": bench.released,
           "breakdown": bench.breakdown}
    if status == "not run":
        return {**row, "status": status}
    if skipped:
        return {**row, "status": "skipped", "reason": skipped, "doc": bench.doc_link}
    # a split scored by a server has a submission file and no metrics (nocaps val has both)
    status = "submission" if "submission" in result and not result["metrics"] else "ok"
    row = {**row, "status": status, "metrics": result["metrics"], "n": result["n"], "n_errors": result["n_errors"],
           "n_total": result["n_total"]}
    if "submission" in result:
        row["submission"] = result["submission"]
    return row


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def breakdown_rows(row: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """(group, {metric: value}) for the ``"<group>/<metric>"`` keys of the row's shown metrics, in the order the
    scorer gave them: synth per modality, nocaps per domain, VQAv2 per answer type."""
    groups: dict[str, dict[str, float]] = {}
    for key, value in (row.get("metrics") or {}).items():
        group, _, metric = key.rpartition("/")
        if group and metric in row["table_metrics"]:
            groups.setdefault(group, {})[metric] = value
    return list(groups.items())


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """``results.md``: per benchmark (and per group it breaks down into) the split we scored, ours, the paper's
    number with its split and table, and the split of the released evaluation script. Percentages throughout."""
    lines = ["# OneLLM evaluation results", "", PREAMBLE, "", TABLE_HEADER, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        names = r["table_metrics"]
        paper = " / ".join(_fmt((r["paper"] or {}).get(m)) for m in names)
        paper_split = r["paper_split"] + (f" ({r['paper_table']})" if r.get("paper_table") else "")
        if r["status"] == "skipped":
            ours, n = f"skipped ({r['reason']})", "–"
        elif r["status"] == "not run":
            ours, n = "not run", "–"
        else:
            ours = " / ".join(_fmt(r["metrics"].get(m)) for m in names)
            if r["status"] == "submission":
                ours = f"→ `{Path(r['submission']['file']).name}` (scored by the server / grader)"
            n = str(r["n"])
            if r["n_errors"]:
                n += f" (+{r['n_errors']} errors)"
            if r["n"] + r["n_errors"] < r["n_total"]:
                n += f" of {r['n_total']}"
        lines.append(f"| {r['benchmark']} | {r['split'] or '–'} | {r['modality']} | {' / '.join(names)} | {ours} | "
                     f"{paper} | {paper_split} | {r['released']} | {n} |")
        for group, values in breakdown_rows(r):
            modality = group if r.get("breakdown") == "modality" else r["modality"]
            cells = " / ".join(_fmt(values.get(m)) for m in names)
            lines.append(f"| {r['benchmark']} · {group} | {r['split'] or '–'} | {modality} | {' / '.join(names)} | "
                         f"{cells} | – |  |  |  |")
    if any("*" in r["paper_split"] for r in rows):
        lines += ["", PAPER_SPLIT_NOTE]
    return "\n".join(lines) + "\n"


def merge_rows(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with every (benchmark, split) of ``new`` replaced by the new row (in place), the rest of ``new``
    appended: a folder's results.md keeps the other splits and benchmarks evaluated into it."""
    fresh = {(r["benchmark"], r.get("split")): r for r in new}
    merged = [fresh.pop((r["benchmark"], r.get("split")), r) for r in old]
    return merged + [r for r in new if (r["benchmark"], r.get("split")) in fresh]


def paper_table(benchmarks: dict[str, Benchmark], names: Sequence[str]) -> str:
    """``results.md`` before any run: every listed benchmark's paper number, metric and splits, ours "not run"
    (docs/results/paper-vs-ours.md is this, for eval/all.yaml)."""
    return format_table([result_row(benchmarks[n], benchmarks[n].default_split, None, status="not run")
                         for n in names])


def submission_messages(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per written submission file: where it is, where it goes, whether it is complete."""
    out = []
    for r in rows:
        sub = r.get("submission")
        if not sub:
            continue
        line = f"{r['benchmark']} ({r['split']}): wrote {sub['file']}; {sub['upload']}"
        if sub["n_answered"] < sub["n_total"]:
            line += (f". INCOMPLETE: {sub['n_answered']} of {sub['n_total']} entries answered (the others are "
                     "empty); a server scores them as wrong")
        out.append(line)
    return out


def list_benchmarks(benchmarks: dict[str, Benchmark]) -> str:
    """A markdown listing of the available definitions (``onellm eval --list``)."""
    lines = ["| benchmark | modality | data sub-folder | splits | metric | paper | docs |",
             "|---|---|---|---|---|---|---|"]
    for b in benchmarks.values():
        paper = " / ".join(_fmt((b.paper or {}).get(m)) for m in b.shown_metrics)
        splits = ", ".join(f"{s} (server)" if b.is_remote(s) else s for s in b.splits) or "–"
        lines.append(f"| {b.name} | {b.modality} | {b.data_dir} | {splits} | {' / '.join(b.shown_metrics)} | "
                     f"{paper} | {b.doc_link} |")
    return "\n".join(lines) + "\n"
