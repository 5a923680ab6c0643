#!/usr/bin/env python3
"""Writes docs/PERFORMANCE.md from one run of the benchmark suite.

Usage: render-performance.py RESULTS.md OUTPUT.md COMMAND

RESULTS.md is package-benchmark's markdown output. Every figure in the
document comes from that one run; the ratios compare figures measured side
by side in it.
"""
import datetime
import os
import platform
import re
import subprocess
import sys

SCALES = {"(K)": 1_000, "(M)": 1_000_000, "(G)": 1_000_000_000}


def parse(path):
    """{benchmark: {metric: {percentile: value}}} from the markdown tables."""
    results, benchmark, columns = {}, None, []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("### "):
            benchmark = line[4:].strip()
            results[benchmark] = {}
        elif line.startswith("| Metric"):
            columns = [cell.strip() for cell in line.strip("|").split("|")][1:]
        elif benchmark and line.startswith("| ") and not line.startswith("|:"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            metric, values = cells[0], cells[1:]
            scale = next((factor for tag, factor in SCALES.items() if tag in metric), 1)
            name = re.sub(r"\s*\((K|M|G)\)", "", metric).rstrip(" *")
            results[benchmark][name] = {
                column: float(value.replace(",", "")) * (scale if column != "Samples" else 1)
                for column, value in zip(columns, values) if re.fullmatch(r"[\d.,]+", value)
            }
    return results


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(open("/proc/meminfo").readline().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} × {cpu}{memory}, Linux {platform.release()}"


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    results_path, output_path, command = sys.argv[1:4]
    r = parse(results_path)

    def value(benchmark, metric, percentile="p50"):
        return r[benchmark][metric][percentile]

    wall = "Time (wall clock) (ns)"
    direct = value("Loop dispatch: direct C function-pointer call", wall)
    ffi = value("Loop dispatch: raw ffi_call, prepared CIF", wall)
    host = value("Loop dispatch: ServiceHost event loop", wall)
    pairs = r["Loop dispatch: host and raw ffi_call in pairs"]
    pair_ratio = pairs["raw ffi_call rate / host rate, per pair (%)"]
    pair_host = pairs["host (ns per call)"]["p50"]
    pair_raw = pairs["raw ffi_call (ns per call)"]["p50"]
    thread_create = r["Restart latency, thread mode"]["SVC_DONE to next svc_create (ns)"]
    thread_loop = r["Restart latency, thread mode"]["SVC_DONE to first svc_loop (ns)"]
    spawn = value("Process start: posix_spawn + wait of a trivial C program", "Time (wall clock) (μs)") * 1000
    process = r["Restart latency, process mode"]["worker crash to new worker's first svc_loop (ns)"]
    small = r["Reload latency, small plugin"]["file replaced to new version's first svc_loop (ns)"]
    large = r["Reload latency, 1 MB plugin"]["file replaced to new version's first svc_loop (ns)"]
    scale = r["Scale: 1,000 plugins"]
    started = scale["run to all 1,000 started (µs)"]["p50"]
    per_service = scale["host memory per service, beyond the plugin's own (KiB)"]["p50"]
    idle = scale["idle host CPU, 1,000 services at interval_ms = 1000 (µs per second)"]["p50"]
    floor = value("Idle floor: 1,000 bare C threads sleeping 1 s", "idle CPU, 1,000 threads waking once a second (µs per second)")
    polled = value("Loop dispatch: ServiceHost event loop, control API polled every 10 ms", wall)
    first_status = scale["control API: first status of 1,000 services (µs)"]["p50"]
    status = scale["control API: status of 1,000 services (µs)"]
    ctl_command = scale["servicehost ctl status of 1,000 services, whole command (µs)"]
    watched = r["Watch: new version renamed into place"]["rename() to new version's first svc_loop (ns)"]
    scrape = scale["GET /metrics of 1,000 services over --http (µs)"]
    scrape_size = scale["GET /metrics of 1,000 services, size (KiB)"]["p50"]

    def verdict(met):
        return "met" if met else "**missed**"

    rows = [
        ("1. Loop dispatch: host rate vs raw `ffi_call`",
         f"in pairs (a million calls of each in turn, {pairs['host (ns per call)']['Samples']:.0f} pairs): host {pair_host:.0f} ns, raw ffi_call {pair_raw:.0f} ns per call; "
         f"measured apart: host {host:.0f} ns, raw ffi_call {ffi:.0f} ns, direct call {direct:.0f} ns",
         f"host runs at {pair_ratio['p50']:.0f} % of the raw ffi_call rate (median of the pairs; p25 {pair_ratio['p25']:.0f} %, p75 {pair_ratio['p75']:.0f} %)",
         "≥ 80 %", verdict(pair_ratio["p50"] >= 80)),
        ("2. Restart, thread mode: `SVC_DONE` → next `svc_create`",
         f"median {thread_create['p50'] / 1000:.1f} µs, p99 {thread_create['p99'] / 1000:.1f} µs",
         f"to first `svc_loop`: median {thread_loop['p50'] / 1000:.1f} µs, p99 {thread_loop['p99'] / 1000:.1f} µs",
         "median ≤ 5 µs, p99 ≤ 50 µs", verdict(thread_create["p50"] <= 5000 and thread_create["p99"] <= 50000)),
        ("3. Restart, process mode: worker crash → new worker's first `svc_loop`",
         f"median {process['p50'] / 1000:.0f} µs, p99 {process['p99'] / 1000:.0f} µs; posix_spawn + wait of a trivial C program: median {spawn / 1000:.0f} µs",
         f"{process['p50'] / spawn:.2f} × the spawn", "≤ 3 ×", verdict(process["p50"] <= 3 * spawn)),
        ("4. Reload: file replaced → new version's first `svc_loop`",
         f"small plugin: median {small['p50'] / 1000:.0f} µs, p99 {small['p99'] / 1000:.0f} µs; 1 MB plugin: median {large['p50'] / 1000:.0f} µs, p99 {large['p99'] / 1000:.0f} µs",
         "", "1 MB ≤ 2 ms", verdict(large["p50"] <= 2_000_000)),
        ("5. Scale: 1,000 plugin files, `run` → all started",
         f"{started / 1000:.0f} ms; host memory per service beyond the plugin's own: {per_service:.0f} KiB",
         "", "≤ 1 s; ≤ 100 KiB", verdict(started <= 1_000_000 and per_service <= 100)),
        ("6. Idle: 1,000 services at `interval_ms = 1000`, 10 s",
         f"host CPU {idle / 10_000:.2f} % of one core ({idle:.0f} µs per second); 1,000 bare C threads sleeping 1 s: {floor / 10_000:.2f} %",
         f"{idle / floor:.2f} × the bare threads", "< 1 %", verdict(idle < 10_000)),
        ("7. Control API: status of the 1,000 services of (5)",
         f"median {status['p50'] / 1000:.1f} ms, p99 {status['p99'] / 1000:.1f} ms (first answer, with every image's SHA-256: {first_status / 1000:.0f} ms); "
         f"the whole `servicehost ctl status` command: median {ctl_command['p50'] / 1000:.0f} ms",
         "", "≤ 50 ms", verdict(status["p50"] <= 50_000)),
        ("8. Loop dispatch while the control API answers a status request every 10 ms",
         f"host {polled:.0f} ns per `svc_loop`", f"{host / polled * 100:.0f} % of the rate without the API (1.)",
         "unchanged", verdict(polled <= host * 1.1)),
        ("9. `--watch`: new version `rename()`d into place → its first `svc_loop`",
         f"median {watched['p50'] / 1e6:.0f} ms, p99 {watched['p99'] / 1e6:.0f} ms (the quiet period is 200 ms)",
         "", "≤ 250 ms + 200 ms", verdict(watched["p50"] <= 450_000_000)),
        ("10. Metrics: `GET /metrics` of the 1,000 services of (5) over `--http`",
         f"median {scrape['p50'] / 1000:.1f} ms, p99 {scrape['p99'] / 1000:.1f} ms, {scrape_size / 1024:.1f} MiB of text",
         "", "≤ 20 ms", verdict(scrape["p50"] <= 20_000)),
    ]

    today = datetime.date.today().isoformat()
    with open(output_path, "w", encoding="utf-8") as out:
        out.write("# Performance\n\n")
        out.write(f"Generated by `{command}` on {today} (commit {commit()}), on {machine()}.\n")
        out.write("Every figure below comes from that one run. The baselines (a direct C call, a raw `ffi_call`,\n")
        out.write("`posix_spawn` of a trivial C program, bare C threads) were measured in the same run, on the same machine.\n")
        out.write("Rerun the command to regenerate this file.\n\n")
        out.write("| what | measured | side by side | target | |\n| --- | --- | --- | --- | --- |\n")
        for what, measured, ratio, target, status in rows:
            out.write(f"| {what} | {measured} | {ratio} | {target} | {status} |\n")
        out.write("\n## How each is measured\n\n")
        out.write("""1. **Loop dispatch**: a no-op plugin's `svc_loop`, a million calls per sample. The verdict uses the *pairs*: one run
   of the host (a million calls) and then a million raw `ffi_call`s, 30 times, each pair's rate ratio recorded, so that
   both sides of a ratio see the same moment of the machine; measured apart (the other rows) they drift by up to 70 %. *Host*: one run of the service
   through `Scheduler` (BaseService's event loop with its stop checks, interval 0, libffi); the run's create, thread
   start and stop are included, spread over the million calls. *Raw ffi_call*: a C loop of `ffi_call` with a CIF
   prepared once. *Direct*: a C loop through a function pointer.
2. **Restart, thread mode**: a plugin whose `svc_loop` returns `SVC_DONE` at once, `restart = "always"`,
   `backoff_initial_ms = 0`, `restart_limit = 0`, the host logging at error level. The plugin stamps `CLOCK_MONOTONIC`
   when it returns `SVC_DONE` and again in the next `svc_create` and `svc_loop`: 10,000 restarts.
3. **Restart, process mode**: a plugin in `isolation = "process"` stamps the time and raises `SIGSEGV` on its first
   `svc_loop`; the next worker's first `svc_loop` reads the stamp (the monotonic clock is shared by all processes):
   2,000 crashes. The baseline spawns and waits for a C `main` that returns 0, from the same benchmark process.
4. **Reload**: the plugin file is overwritten in place with the other of two builds, then `Scheduler.restart` is
   called; measured from the end of the write to the new version's first `svc_loop` (200 reloads each). The 1 MB
   plugin carries 1 MB of read-only data in its image.
5. **Scale**: 1,000 copies of a no-op plugin, each with a sidecar; from creating the `Scheduler` to the 1,000th
   `started` event. Memory: the growth of the process's resident memory, less the resident pages of the plugins'
   own mappings, divided by 1,000.
6. **Idle**: the process's CPU time (user + system, `getrusage`) over 10 s while the 1,000 services of (5) pause
   `interval_ms = 1000` between no-op loops. Each service has a thread of its own (plugin code may block), so each
   second costs 1,000 thread wakeups; the bare-thread figure is what the kernel charges for that many wakeups with no
   work in them. The host keeps close to it by sleeping on a futex (one system call per pause) and by ending the
   pauses of a given interval on a shared grid, up to 1 % of the interval (at most 10 ms) late, with the timer slack
   to match, so that the kernel wakes many services per timer.
7. **Control API**: after (6), a `ControlServer` over the same 1,000 services; `GET /v1/services` through
   `ControlClient` on the Unix socket, 50 times after a first answer (which computes the SHA-256 of every image);
   then `servicehost ctl status` run 10 times as a process of its own (start-up included).
8. **Loop dispatch, API polled**: (1) again while a `ControlServer` runs beside the scheduler and a client asks it for
   every service's status every 10 ms; "unchanged" allows 10 % of noise.
9. **Watch**: a `DirectoryWatcher` on a plugins directory reloads it on each settled change (as `run --watch` does);
   the other of two builds is written under a temporary name and `rename()`d over the plugin, 20 times; measured from
   the rename to the new version's first `svc_loop` (its stamp).
10. **Metrics**: after (7), a `ProbeServer` (what `run --http` serves) over the same 1,000 services; `GET /metrics`
   over TCP on the loopback, 50 times after a first scrape (which registers every series), from the request to the
   last byte of the answer. Loops are counted with a plain store on each service's thread, so (1) and (2) include
   that cost.
""")
        out.write("\n## The run\n\n")
        out.write("package-benchmark's report of the run, unedited:\n\n")
        text = open(results_path, encoding="utf-8").read()
        start = text.find("## Baseline")
        out.write(text[start:] if start >= 0 else text)


if __name__ == "__main__":
    main()
