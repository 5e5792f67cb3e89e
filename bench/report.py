#!/usr/bin/python3
"""Turns the raw samples bench/run.sh collected into the results table.

  report.py SAMPLES RESULTS_MD

SAMPLES holds one tab-separated record per line:
  meta  KEY  VALUE
  rr    NAME ROUND WRK_OUTPUT_FILE CPU_TICKS NPROCS OTHER_TICKS NCPUS
        (CPU_TICKS: proxy utime+stime delta, "-" for direct; OTHER_TICKS: CPU
        the machine spent on anything but wrk/backend/proxy during the run)
  rss   NAME idle|end KB NPROCS
  fail  NAME REASON
  bulk  NAME ROUND BYTES SECONDS
  bulkfail NAME REASON
Prints a plain-text table and writes the same results as markdown.
"""
import os
import re
import statistics
import sys

ORDER = ["direct", "meshd", "haproxy", "nginx"]
LABEL = {
    "direct": "direct (no proxy)",
    "meshd": "meshd --forward",
    "haproxy": "HAProxy tcp",
    "nginx": "nginx stream",
}
TARGET_RPS_VS_NGINX = 1.25
TARGET_CPU_VS_NGINX = 0.70
TARGET_IDLE_RSS_MB = 8.0
NOISY_PCT = 5.0

UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_h2load(text):
    """h2load's summary: dict(rps, requests, failed, mean_us, max_us), or
    raises ValueError."""
    m = re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s", text, re.M)
    r = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text, re.M)
    t = re.search(r"^time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", text, re.M)
    if not (m and r and t):
        raise ValueError("unexpected h2load output: " + text.strip()[-300:])
    unit = {"us": 1.0, "ms": 1e3, "s": 1e6}
    return {"rps": float(m.group(1)), "requests": int(r.group(4)),
            "failed": int(r.group(5)) + int(r.group(6)) + int(r.group(7)),
            "mean_us": float(t.group(5)) * unit[t.group(6)], "max_us": float(t.group(3)) * unit[t.group(4)]}


def parse_wrk(path):
    """Returns dict(rps, requests, p50_us, p99_us, errors) or raises ValueError."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    out = {}
    m = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if not m:
        raise ValueError("no Requests/sec in wrk output")
    out["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+)", text, re.M)
    if not m:
        raise ValueError("no request count in wrk output")
    out["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s*" + pct + r"%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
        if not m:
            raise ValueError(f"no {pct}% latency in wrk output (was --latency given?)")
        out[key] = float(m.group(1)) * UNIT_US[m.group(2)]
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    out["errors"] = errors
    return out


def fmt_us(us):
    if us is None:
        return "-"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} us"


def fmt_mb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def median(xs):
    return statistics.median(xs) if xs else None


def load(samples_path):
    meta, rr, rss, fail, bulk, bulkfail = {}, {}, {}, {}, {}, {}
    with open(samples_path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            kind = parts[0]
            if kind == "meta":
                meta[parts[1]] = parts[2] if len(parts) > 2 else ""
            elif kind == "rr":
                _, name, rnd, path, ticks, nprocs, other, ncpus = parts
                rr.setdefault(name, []).append((path, ticks, int(nprocs), int(other), int(ncpus), int(rnd)))
            elif kind == "rss":
                _, name, when, kb, nprocs = parts
                rss.setdefault(name, {})[when] = (int(kb), int(nprocs))
            elif kind == "fail":
                fail.setdefault(parts[1], parts[2])
            elif kind == "bulk":
                _, name, _round, nbytes, secs = parts
                bulk.setdefault(name, []).append(int(nbytes) / float(secs) / 1e6)
            elif kind == "bulkfail":
                bulkfail.setdefault(parts[1], parts[2])
    return meta, rr, rss, fail, bulk, bulkfail


def summarize(meta, rr, rss, fail):
    hz = os.sysconf("SC_CLK_TCK")
    duration = float(meta.get("duration", 1))
    rows = {}
    for name in ORDER:
        row = {"fail": fail.get(name)}
        samples = []
        row["by_round"] = {}
        for path, ticks, nprocs, other, ncpus, rnd in rr.get(name, []):
            try:
                s = parse_wrk(path)
            except (OSError, ValueError) as e:
                row["fail"] = row["fail"] or f"wrk: {e}"
                continue
            if s["requests"] == 0:
                row["fail"] = row["fail"] or "wrk completed 0 requests"
                continue
            s["cpu_us"] = None if ticks == "-" else int(ticks) * 1e6 / hz / s["requests"]
            s["nprocs"] = nprocs
            s["other_pct"] = 100.0 * other / (hz * ncpus * duration)
            row["by_round"][rnd] = s
            samples.append(s)
        row["n"] = len(samples)
        if samples:
            rps = [s["rps"] for s in samples]
            row["rps"] = median(rps)
            row["rps_min"], row["rps_max"] = min(rps), max(rps)
            row["p50_us"] = median([s["p50_us"] for s in samples])
            row["p99_us"] = median([s["p99_us"] for s in samples])
            cpus = [s["cpu_us"] for s in samples if s["cpu_us"] is not None]
            row["cpu_us"] = median(cpus)
            row["errors"] = sum(s["errors"] for s in samples)
            row["nprocs"] = samples[-1]["nprocs"]
            row["other_pct"] = max(s["other_pct"] for s in samples)
        r = rss.get(name, {})
        row["rss_idle_kb"] = r.get("idle", (None, 0))[0]
        row["rss_end_kb"] = r.get("end", (None, 0))[0]
        if "rps" not in row and not row["fail"]:
            row["fail"] = "no samples"
        rows[name] = row
    return rows


def round_ratio(rows, a, b, key):
    """Median over rounds of a[key]/b[key] within the same round: both ran
    seconds apart, so a disturbance that hits a whole round cancels out."""
    ra, rb = rows[a].get("by_round", {}), rows[b].get("by_round", {})
    vals = [ra[r][key] / rb[r][key] for r in ra if r in rb
            and ra[r].get(key) is not None and rb[r].get(key)]
    return median(vals)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def verdict(value, target, higher_is_better):
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "MET" if ok else "MISSED"


def render(meta, rows, bulk, bulkfail):
    """Returns (text, markdown)."""
    text, md = [], []
    head = ["proxy", "req/s (median)", "req/s min..max", "p50", "p99", "CPU us/req", "idle RSS", "end RSS", "errors", "other load"]
    table, failures, noisy = [], [], 0.0
    for name in ORDER:
        row = rows[name]
        if "rps" not in row:
            table.append([LABEL[name], "failed (below)"] + ["-"] * (len(head) - 2))
            failures.append(f"{LABEL[name]} failed: {row['fail']}")
            continue
        procs = row.get("nprocs", 0)
        cpu = "-" if row["cpu_us"] is None else f"{row['cpu_us']:.2f}"
        if procs > 1 and row["cpu_us"] is not None:
            cpu += f" ({procs} procs)"
        idle = fmt_mb(row["rss_idle_kb"]) if name != "direct" else "-"
        end = fmt_mb(row["rss_end_kb"]) if name != "direct" else "-"
        table.append([
            LABEL[name], f"{row['rps']:,.0f}", f"{row['rps_min']:,.0f}..{row['rps_max']:,.0f}",
            fmt_us(row["p50_us"]), fmt_us(row["p99_us"]), cpu, idle, end,
            str(row["errors"]) + ("" if not row["fail"] else f" ({row['fail']})"),
            f"{row['other_pct']:.0f}%",
        ])
        noisy = max(noisy, row["other_pct"])

    setup = (
        f"wrk -t1 -c{meta.get('conns')} -d{meta.get('duration')}s (after a {meta.get('warmup')}s warm-up), "
        f"keep-alive HTTP/1.1, {meta.get('response')}; median of {meta.get('repeat')} rounds; "
        f"{meta.get('pinning')}"
    )
    sysline = f"{meta.get('cpus')} CPUs ({meta.get('cpu_model')}), kernel {meta.get('kernel')}, {meta.get('versions')}"

    # plain text
    widths = [max(len(str(r[i])) for r in [head] + table) for i in range(len(head))]
    text.append("== request/response: " + setup)
    text.append("   " + sysline)
    text.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    text.append("  ".join("-" * w for w in widths))
    for r in table:
        text.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    for f in failures:
        text.append("  " + f)
    note = ("other load = CPU time taken on the run's CPUs by anything but wrk, backend "
            "and proxy (worst round)")
    if "SCHED_FIFO" in meta.get("pinning", ""):
        note += ("; under SCHED_FIFO the kernel still lends other runnable work 50 ms per "
                 "second per CPU, which shows as p99 stalls on a busy machine")
    bg = float(meta.get("background", 0))
    note += f"; before the run the machine was {bg:.0f}% busy"
    noisy = max(noisy, bg)
    if noisy > NOISY_PCT:
        note += f"; WARNING: up to {noisy:.0f}% - the machine was busy, figures are noisy"
    text.append("  " + note)

    md.append("### Request/response (wrk, loopback)")
    md.append("")
    md.append(setup + ".  ")
    md.append(sysline + ".")
    md.append("")
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for r in table:
        md.append("| " + " | ".join(str(c) for c in r) + " |")
    md.append("")
    for f in failures:
        md.append(f"- {f}")
    md.append(f"- {note}")
    md.append("")

    # ratios
    m = rows["meshd"]
    lines = []
    for peer in ("nginx", "haproxy"):
        p = rows[peer]
        rr_ = round_ratio(rows, "meshd", peer, "rps")
        cr = round_ratio(rows, "meshd", peer, "cpu_us")
        if peer == "nginx":
            t1 = f"target >= {TARGET_RPS_VS_NGINX:.2f}x: {verdict(rr_, TARGET_RPS_VS_NGINX, True)}"
            t2 = f"target <= {TARGET_CPU_VS_NGINX:.2f}x: {verdict(cr, TARGET_CPU_VS_NGINX, False)}"
        else:
            t1 = t2 = "no target"
        lines.append((f"meshd req/s / {LABEL[peer]} req/s", rr_, t1))
        lines.append((f"meshd CPU/req / {LABEL[peer]} CPU/req", cr, t2))
    idle = m.get("rss_idle_kb")
    idle_mb = None if idle is None else idle / 1024
    text.append("")
    text.append("== ratios (median over rounds of the ratio within each round)")
    md.append("### Ratios")
    md.append("")
    md.append("Median over rounds of the ratio within each round.")
    md.append("")
    md.append("| ratio | value | target |")
    md.append("|---|---:|---|")
    w = max(len(l[0]) for l in lines)
    for label, val, tgt in lines:
        v = "n/a" if val is None else f"{val:.2f}x"
        text.append(f"  {label.ljust(w)}  {v:>7}   ({tgt})")
        md.append(f"| {label} | {v} | {tgt} |")
    v = "n/a" if idle_mb is None else f"{idle_mb:.1f} MB"
    tgt = f"target < {TARGET_IDLE_RSS_MB:.0f} MB: " + (
        "n/a" if idle_mb is None else ("MET" if idle_mb < TARGET_IDLE_RSS_MB else "MISSED"))
    text.append(f"  {'meshd idle RSS'.ljust(w)}  {v:>7}   ({tgt})")
    md.append(f"| meshd idle RSS | {v} | {tgt} |")
    md.append("")

    # bulk
    text.append("")
    bsetup = (f"one TCP connection, {meta.get('bulk_mib')} MiB, bench/bulk.py sender -> sink, "
              f"median of {meta.get('repeat')}; MB = 10^6 bytes; {meta.get('pinning')}")
    text.append("== single-stream bulk: " + bsetup)
    md.append("### Single-stream bulk transfer")
    md.append("")
    md.append(bsetup + ".")
    md.append("")
    md.append("| path | MB/s (median) | vs direct |")
    md.append("|---|---:|---:|")
    direct = median(bulk.get("direct", []))
    for name in ORDER:
        vals = bulk.get(name, [])
        if not vals:
            reason = bulkfail.get(name, "no samples")
            text.append(f"  {LABEL[name].ljust(18)}  failed: {reason}")
            md.append(f"| {LABEL[name]} | failed: {reason} | |")
            continue
        mb = median(vals)
        r = ratio(mb, direct)
        rs = "-" if name == "direct" else ("n/a" if r is None else f"{r:.2f}x")
        text.append(f"  {LABEL[name].ljust(18)}  {mb:9,.0f} MB/s   {rs:>6}")
        md.append(f"| {LABEL[name]} | {mb:,.0f} | {rs} |")
    md.append("")
    return "\n".join(text), "\n".join(md)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    meta, rr, rss, fail, bulk, bulkfail = load(sys.argv[1])
    rows = summarize(meta, rr, rss, fail)
    text, md = render(meta, rows, bulk, bulkfail)
    print(text)
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(f"<!-- generated by make bench ({meta.get('date', '')}) -->\n")
        f.write(md)
    print(f"\n(markdown written to {sys.argv[2]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
