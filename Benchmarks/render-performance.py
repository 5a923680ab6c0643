#!/usr/bin/env python3
"""Writes docs/PERFORMANCE.md from one run of the benchmark suite.

Usage: render-performance.py RESULTS.md OUTPUT.md COMMAND [SIDE.json [SIDE_STATUS]]

RESULTS.md is package-benchmark's markdown output. Every figure of rows 1 to
10 comes from that one run; the ratios compare figures measured side by side
in it. SIDE.json is the output of Benchmarks/side-by-side.py run right after
it (rows 11 to 17, the sections "Side by side with supervisord" and "Scale"),
SIDE_STATUS its exit status: when the file is missing, empty or not JSON, or
the status is not 0, the document is still written, with what there is, and
says that the side-by-side run failed. When Benchmarks/analysis.md exists, its
text goes in verbatim under "Where the time and memory go".
"""
import datetime
import json
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


def load_side_by_side(path, status):
    """(document or None, why it failed or None) of side-by-side.py's output."""
    if path is None:
        return None, "not run"
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as error:
        return None, f"its output cannot be read: {error.strerror}"
    exit_status = f"; exit status {status}" if status else ""
    if not text.strip():
        return None, f"it printed nothing{exit_status}"
    try:
        document = json.loads(text)
    except ValueError:
        return None, f"its output is not JSON{exit_status}"
    if status:
        errors = [f"{workload} {column}" for workload in ("crash_loop", "idle", "scale")
                  for column, result in document.get(workload, {}).items()
                  if isinstance(result, dict) and "error" in result]
        return document, f"exit status {status}" + (f"; failed: {', '.join(errors)}" if errors else "")
    return document, None


def dig(value, *path):
    """value[path[0]][path[1]]…, or None when any step is missing."""
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def count(number):
    """1,234 for a number or a string of digits; other strings as they are."""
    if isinstance(number, str):
        return f"{int(number):,}" if number.isdigit() else number
    return f"{number:,}" if isinstance(number, int) else f"{number:,.0f}"


def plural(number, word):
    return f"{count(number)} {word}{'' if number == 1 else 's'}"


def side_result(result):
    """None when the result has figures, else why not (failed, skipped, not measured)."""
    if result is None:
        return "not measured"
    if "error" in result:
        return f"failed: {result['error']}"
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    return None


def side_rows(side, why_not, verdict):
    """Rows 11 to 17, from side-by-side.py's document."""
    def missing(number, what, target, result=None):
        why = (side_result(result) if side is not None
               else f"not measured: the side-by-side run failed ({why_not})")
        return (f"{number}. {what}", why, "", target, "not measured")

    crash = dig(side, "crash_loop", "servicehost_process")
    crash_supervisord = dig(side, "crash_loop", "supervisord")
    crash_thread = dig(side, "crash_loop", "servicehost_thread")
    idle = dig(side, "idle", "servicehost_process")
    idle_supervisord = dig(side, "idle", "supervisord")
    services = dig(side, "parameters", "services") or 300
    process = dig(side, "scale", "process")
    thread = dig(side, "scale", "thread")
    rows = []

    what = "Restart, process isolation, crash-looping service (no backoff): restarts per second"
    if side_result(crash):
        rows.append(missing(11, what, "≥ 2,000/s", crash))
    else:
        others = []
        if not side_result(crash_supervisord):
            others.append(f"supervisord + C program: {crash_supervisord['restarts_per_second']:,.1f}/s")
        if not side_result(crash_thread):
            others.append(f"ServiceHost, thread isolation (`svc_loop` returns an error): "
                          f"{crash_thread['restarts_per_second']:,.0f}/s")
        rows.append((f"11. {what}",
                     f"{crash['restarts_per_second']:,.0f}/s ({count(crash['restarts'])} in {crash['window_s']:.1f} s, "
                     f"each with its log line: {plural(crash['log_lines_in_window'], 'line')}); the host and its fork "
                     f"server used {crash['supervisor_cpu_percent_of_one_core']:.0f} % of one core",
                     "; ".join(others), "≥ 2,000/s", verdict(crash["restarts_per_second"] >= 2000)))

    what = f"Memory, {services} idle process-isolated services: PSS of the whole tree per service"
    if side_result(idle):
        rows.append(missing(12, what, "≤ 150 KiB", idle))
    else:
        memory = idle["memory"]
        other = ""
        if not side_result(idle_supervisord):
            other = (f"supervisord + C programs: {idle_supervisord['memory']['pss_kib_per_service']:,.0f} KiB "
                     f"per service ({idle_supervisord['memory']['pss_kib'] / 1024:,.1f} MiB)")
        rows.append((f"12. {what}",
                     f"{memory['pss_kib_per_service']:,.0f} KiB per service ({memory['pss_kib'] / 1024:,.1f} MiB "
                     f"in all, {count(memory['processes'])} processes, {count(memory['threads'])} threads)",
                     other, "≤ 150 KiB", verdict(memory["pss_kib_per_service"] <= 150)))

    n = dig(process, "services") or dig(side, "parameters", "scale_process_services") or 1000
    what = f"Descriptors in the host per process-isolated service ({count(n)} services)"
    if side_result(process):
        rows.append(missing(13, what, "≤ 1", process))
        rows.append(missing(14, f"{count(n)} process-isolated services: `run` → READY", "all running, ≤ 2 s", process))
    else:
        held = process["host_descriptors"]
        sockets = held["by_kind"].get("socket", 0)
        other = ""
        if not side_result(idle_supervisord):
            other = (f"supervisord: {idle_supervisord['supervisor_descriptors']['per_service']:.2f} per service "
                     f"({services} services)")
        # What a service adds: beyond what a host holds with no process-isolated
        # service at all (the thread-isolation idle run's count, fork server included).
        fixed = dig(side, "idle", "servicehost_thread", "supervisor_descriptors", "count")
        added = (held["count"] - fixed) / n if fixed is not None else held["per_service"]
        rows.append((f"13. {what}",
                     f"{added:.3f} added per service: {count(held['count'])} in the host with "
                     f"{count(process['start']['started'])} running ({count(sockets)} sockets, "
                     f"{count(held['count'] - sockets)} others)"
                     + (f"; {count(fixed)} in a host with no process-isolated service" if fixed is not None else ""),
                     other, "≤ 1", verdict(round(added, 2) <= 1)))
        limit = process["nofile_limit"]
        start = process["start"]
        rows.append((f"14. {count(n)} process-isolated services: `run` → READY",
                     f"{start['seconds']:.2f} s, “{start['ready_status']}”; started with a soft `RLIMIT_NOFILE` of "
                     f"{count(limit['soft_at_spawn'])} (hard {count(limit['hard_at_spawn'])}), which the host raised "
                     f"to {count(dig(limit, 'host_proc_limits', 'soft'))}",
                     "", "all running, ≤ 2 s",
                     verdict(start["started"] == n and start["seconds"] <= 2)))

    n = dig(thread, "services") or dig(side, "parameters", "scale_thread_services") or 10000
    what = f"Scale, thread isolation, {count(n)} plugin files: `run` → READY"
    memory_what = "Memory in the host per thread-isolated service of (15), beyond the plugins' own"
    idle_what = "Idle: the thread-isolated services of (15) at `interval_ms = 1000`"
    if side_result(thread):
        rows.append(missing(15, what, "all started, ≤ 3 s", thread))
        rows.append(missing(16, memory_what, "≤ 20 KiB", thread))
        rows.append(missing(17, idle_what, "≤ 1.2 × bare threads", thread))
    else:
        start = thread["start"]
        reasons = thread["failure_reasons"]["top"]
        if len(reasons) == 1:
            why = f"; every failure logged as `{reasons[0]['reason']}`"
        else:
            why = f"; {len(reasons)} distinct reasons (see Scale)" if reasons else ""
        rows.append((f"15. {what}",
                     f"{start['seconds']:.2f} s: {count(start['started'])} started, {count(start['failed'])} failed"
                     f"{why}",
                     f"`vm.max_map_count` {count(thread['vm_max_map_count'])}: the host had "
                     f"{count(thread['host_mappings']['count'])} mappings, "
                     f"{thread['host_mappings']['per_running_service']:.1f} per running service"
                     f"{bare_dlopen_text(thread)}",
                     "all started, ≤ 3 s", verdict(start["started"] == n and start["seconds"] <= 3)))
        memory = thread["host_memory"]
        per_service = memory["beyond_plugins_kib_per_running_service"]
        rows.append((f"16. {memory_what}",
                     f"{per_service:.1f} KiB (host PSS {memory['pss_kib'] / 1024:,.0f} MiB less "
                     f"{memory['plugin_copies_pss_kib'] / 1024:,.0f} MiB of its {count(memory['plugin_copies_files'])} "
                     f"plugin copies, over {count(start['started'])} running services)",
                     "", "≤ 20 KiB", verdict(per_service is not None and per_service <= 20)))
        host_cpu = thread["host_cpu"]
        floor = thread.get("bare_threads") or {}
        ratio = thread.get("idle_cpu_times_bare_threads")
        if floor.get("cpu"):
            floor_text = (f"; {count(floor['threads'])} bare C threads sleeping 1 s: "
                          f"{floor['cpu']['percent_of_one_core']:.2f} %")
        else:
            floor_text = f"; bare threads: {floor.get('skipped') or floor.get('error') or 'not measured'}"
        rows.append((f"17. {idle_what}, {host_cpu['window_s']:.0f} s",
                     f"host CPU {host_cpu['percent_of_one_core']:.2f} % of one core{floor_text}",
                     f"{ratio:.2f} × the bare threads" if ratio is not None else "",
                     "≤ 1.2 × bare threads", verdict(ratio is not None and ratio <= 1.2)))
    return rows


SIDE_COLUMNS = (("supervisord", "supervisord + C programs"), ("servicehost_process", "ServiceHost, process"),
                ("servicehost_thread", "ServiceHost, thread"))


def side_by_side_section(side, why_not):
    """## Side by side with supervisord: the table and how it is fair."""
    out = ["## Side by side with supervisord", ""]
    if side is None:
        return out + [f"Not measured: `Benchmarks/side-by-side.py` failed ({why_not}).", ""]
    if why_not:
        out += [f"`Benchmarks/side-by-side.py` failed in part ({why_not}); what it measured is below.", ""]
    services = dig(side, "parameters", "services") or 300

    said = set()

    def cells(workload, render):
        """The row's cell of each column; why a column has no figures, once per column and workload."""
        row = []
        for column, _ in SIDE_COLUMNS:
            result = dig(side, workload, column)
            if column == "supervisord" and result is None and dig(side, "supervisord", "skipped"):
                result = {"skipped": side["supervisord"]["skipped"]}
            why = side_result(result)
            if why and (workload, column) in said:
                why = "—"
            said.add((workload, column))
            row.append(why or render(result))
        return row

    def rate(result):
        per_second = result["restarts_per_second"]
        return f"{per_second:,.1f}" if per_second < 100 else f"{per_second:,.0f}"

    def memory(result):
        memory = result["memory"]
        return f"{memory['pss_kib'] / 1024:,.1f} MiB; {memory['pss_kib_per_service']:,.0f} KiB per service"

    rows = [
        ("crash → running again, restarts per second", cells("crash_loop", rate)),
        (f"start of {services} idle services to all running",
         cells("idle", lambda result: f"{result['start']['seconds']:.2f} s")),
        ("memory, PSS of the whole process tree", cells("idle", memory)),
        ("idle CPU, % of one core (schedstat)",
         cells("idle", lambda result: f"{result['cpu']['percent_of_one_core']:.2f} %")),
        ("processes / threads",
         cells("idle", lambda result: f"{count(result['memory']['processes'])} / {count(result['memory']['threads'])}")),
        ("supervisor's descriptors per service",
         cells("idle", lambda result: f"{result['supervisor_descriptors']['per_service']:.2f}")),
    ]
    out.append("| | " + " | ".join(title for _, title in SIDE_COLUMNS) + " |")
    out.append("| --- |" + " --- |" * len(SIDE_COLUMNS))
    out += [f"| {what} | " + " | ".join(row) + " |" for what, row in rows]
    out.append("")

    version = dig(side, "supervisord", "version")
    crash_window = dig(side, "parameters", "crash_window_s") or 5
    idle_window = dig(side, "parameters", "idle_window_s") or 10
    settle = dig(side, "parameters", "settle_s") or 3
    poll = dig(side, "parameters", "supervisord_rpc_poll_interval_ms") or 10
    level = dig(side, "parameters", "log_level") or "error"
    log_lines = dig(side, "crash_loop", "servicehost_process", "log_lines_in_window")
    logged = f" ({count(log_lines)} lines in the process column's window)" if isinstance(log_lines, int) else ""
    out.append(
        "How it is fair. The same work runs in every column, from the same C code compiled by the same `cc -O2` "
        f"(`Benchmarks/Fixtures/side_*.c`): a program under supervisord{f' {version}' if version else ''}, a plugin "
        f"under ServiceHost, with core dumps off and logging at level {level} on both sides. supervisord is set up "
        "for its fastest restarts (`startsecs = 0`, `autorestart = true`, `startretries = 1000000`) and its cheapest "
        "logging (no log file for the programs' output); ServiceHost's crashing service has `restart = \"always\"`, "
        "`backoff_initial_ms = 0` and `restart_limit = 0`, and logs a line per failure at that level, which its "
        f"rate pays for{logged}. Restarts are the bytes the service appends to a counter file on each start, in a "
        f"{crash_window:g} s window beginning at the first. supervisord's main loop polls with a 1 s timeout and "
        "starts an exited program on the pass after the one that reaped it, so about one restart a second is its "
        "design, measured here, not a handicap added here. The thread column cannot survive a `SIGSEGV` (it would "
        "take the whole host down), so there `svc_loop` returns an error code instead of crashing: the same restart "
        "policy, without a process. Readiness: ServiceHost sends READY=1 on `$NOTIFY_SOCKET` once no service is "
        f"starting; supervisord is asked over XML-RPC every {poll:g} ms until every program is RUNNING (with "
        "`startsecs = 0`, that is spawned). Memory is the PSS (`smaps_rollup`) summed over the supervisor and all its "
        f"descendants after {settle:g} s of settling, so no shared page is counted twice. CPU is the time on CPU of "
        f"every thread of every process in the tree (`/proc/PID/task/TID/schedstat`) over {idle_window:g} s, as "
        "per-process tick counters round hundreds of processes that each run microseconds a second down to zero. "
        "Each supervisor has its control socket on. The machine's load average (1, 5 and 15 minutes) before the "
        f"run: {', '.join(side.get('loadavg_before', []))}; after it: {', '.join(side.get('loadavg_after', []))}.")
    out.append("")
    return out


def bare_dlopen_text(thread):
    """'; a bare C process dlopens the same files in S s' for row 15, or why not."""
    floor = thread.get("bare_dlopen") or {}
    if "seconds" not in floor:
        return f"; bare dlopen floor: {floor.get('error', 'not measured')}"
    return (f"; a bare C process `dlopen`s the same {count(floor['files'])} files in {floor['seconds']:.2f} s "
            f"(the first 1,000 in {floor['first_1000_s']:.2f} s)")


def scale_section(side, why_not):
    """## Scale: the two scale runs side by side, and the reasons of the failures."""
    out = ["## Scale", ""]
    process, thread = dig(side, "scale", "process"), dig(side, "scale", "thread")
    if side is None or (process is None and thread is None):
        return out + [f"Not measured: `Benchmarks/side-by-side.py` failed ({why_not or 'no scale workload'}).", ""]
    empty = "—"
    said = set()

    def both(render_process, render_thread):
        """The row's two cells; why a column has no figures, in its first row only."""
        cells = []
        for column, result, render in (("process", process, render_process), ("thread", thread, render_thread)):
            why = side_result(result)
            if why:
                cells.append(empty if column in said else why)
                said.add(column)
            else:
                cells.append(render(result) or empty)
        return cells

    def limits(result):
        limit = result["nofile_limit"]
        return (f"soft `RLIMIT_NOFILE` {count(limit['soft_at_spawn'])} at spawn (hard {count(limit['hard_at_spawn'])}); "
                f"the host's own “Max open files”: soft {count(dig(limit, 'host_proc_limits', 'soft'))}, "
                f"hard {count(dig(limit, 'host_proc_limits', 'hard'))}")

    def descriptors(result):
        held = result["host_descriptors"]
        kinds = ", ".join(f"{count(number)} {kind}" for kind, number in held["by_kind"].items())
        return f"{count(held['count'])}, {held['per_service']:.3f} per service ({kinds})"

    def thread_memory(result):
        memory = result["host_memory"]
        return (f"host PSS {memory['pss_kib'] / 1024:,.1f} MiB, of which {memory['plugin_copies_pss_kib'] / 1024:,.1f} "
                f"MiB in {count(memory['plugin_copies_mappings'])} mappings of "
                f"{count(memory['plugin_copies_files'])} plugin copies; the rest "
                f"{memory['beyond_plugins_kib_per_running_service']:.1f} KiB per running service")

    def thread_cpu(result):
        cpu, floor = result["host_cpu"], result.get("bare_threads") or {}
        text = f"host {cpu['percent_of_one_core']:.2f} % of one core ({cpu['timeslices_per_second']:,.0f} wakeups/s)"
        if floor.get("cpu"):
            text += (f"; {count(floor['threads'])} bare threads {floor['cpu']['percent_of_one_core']:.2f} % "
                     f"({floor['cpu']['timeslices_per_second']:,.0f} wakeups/s): "
                     f"{result['idle_cpu_times_bare_threads']:.2f} ×")
        return text

    def ready(result):
        start = result["start"]
        return f"{start['seconds']:.2f} s, “{start['ready_status']}”"

    rows = [
        ("services", [count(dig(side, "parameters", "scale_process_services") or empty),
                      count(dig(side, "parameters", "scale_thread_services") or empty)]),
        ("`run` → READY=1, its status", both(ready, ready)),
        ("the limit that counts", both(limits, lambda r: f"`vm.max_map_count` {count(r['vm_max_map_count'])}")),
        ("`dlopen` of the same files in a bare C process", both(lambda r: None, lambda r: bare_dlopen_text(r)[2:])),
        ("host descriptors", both(descriptors, lambda r: None)),
        ("host mappings", both(lambda r: None, lambda r: f"{count(r['host_mappings']['count'])}, "
                               f"{r['host_mappings']['per_running_service']:.2f} per running service")),
        ("memory", both(lambda r: f"PSS of the whole tree {r['memory']['pss_kib'] / 1024:,.1f} MiB, "
                                  f"{r['memory']['pss_kib_per_service']:,.0f} KiB per service", thread_memory)),
        ("processes / threads", both(lambda r: f"{count(r['memory']['processes'])} / {count(r['memory']['threads'])}",
                                     lambda r: f"1 / {count(r['host_threads'])}")),
        ("idle CPU (schedstat)", both(lambda r: None, thread_cpu)),
        ("`SIGTERM` → host exited", both(lambda r: f"{r['stop_s']:.1f} s", lambda r: f"{r['stop_s']:.1f} s")),
    ]
    out.append("| | process isolation | thread isolation |")
    out.append("| --- | --- | --- |")
    out += [f"| {what} | {cells[0]} | {cells[1]} |" for what, cells in rows]
    out.append("")

    def reasons_table(title, log):
        if not log or not log.get("top"):
            return []
        shown = sum(reason["count"] for reason in log["top"])
        lines = [f"{title} ({plural(log['log_lines'], 'line')}, {count(log['distinct'])} distinct; service names "
                 "written `S…`, the scratch directory `$WORK`):", "", "| count | line |", "| ---: | --- |"]
        lines += [f"| {count(reason['count'])} | `{reason['reason']}` |" for reason in log["top"]]
        if shown < log["log_lines"]:
            lines.append(f"| {count(log['log_lines'] - shown)} | (the other lines) |")
        return lines + [""]

    if not side_result(thread):
        failed = thread["start"]["failed"]
        out += reasons_table(f"Thread isolation: the reasons of the {count(failed)} failures, from the host's log "
                             "(level error) until the stop", thread.get("failure_reasons"))
        if failed and not dig(thread, "failure_reasons", "top"):
            out += [f"Thread isolation: {count(failed)} failed, and the host's log gives no reason.", ""]
        memory = thread["host_memory"]
        if failed and memory["plugin_copies_files"] > thread["start"]["started"]:
            out += [f"The host kept {count(memory['plugin_copies_files'])} plugin copies mapped for "
                    f"{count(thread['start']['started'])} running services: the images of the failed ones stay loaded "
                    f"({memory['plugin_copies_mappings'] / memory['plugin_copies_files']:.0f} mappings each, "
                    f"{count(round(failed * memory['plugin_copies_mappings'] / memory['plugin_copies_files']))} "
                    "mappings in all).", ""]
        out += reasons_table("Thread isolation: the host's log while it stopped", thread.get("log_while_stopping"))
    if not side_result(process):
        out += reasons_table("Process isolation: the host's log (level error) until the stop",
                             process.get("log_until_stop"))
        out += reasons_table("Process isolation: the host's log while it stopped", process.get("log_while_stopping"))
    out.append(
        "How: the idle plugin of the side by side (`svc_loop` returns at once, `interval_ms = 1000`), copied once per "
        "service with a sidecar each; `servicehost run --isolation process|thread --log-level error`, READY=1 read on "
        "`$NOTIFY_SOCKET`, the host's standard error kept in a file. The process run starts the host with the soft "
        "`RLIMIT_NOFILE` above; the host raises its soft limit to the hard one itself (documented). After "
        f"{dig(side, 'parameters', 'settle_s') or 3:g} s of settling: descriptors are the entries of the host's "
        "`/proc/PID/fd`, mappings the lines of its `/proc/PID/maps`, the plugins' own memory the `Pss` of its mappings "
        "of its staged plugin copies (`/proc/PID/smaps`). The bare threads are `Benchmarks/Fixtures/side_bare_threads.c` "
        "with as many threads as services ran, the default stack size (as the host's service threads) and the host's "
        "10 ms timer slack, measured right after "
        "the host stopped, over a window as long.")
    out.append("")
    return out


HOW_SIDE_BY_SIDE = """11. **Crash loop**, from `Benchmarks/side-by-side.py`: one process-isolated service whose `svc_create` appends a
   byte to a counter file and whose first `svc_loop` raises `SIGSEGV`; `restart = "always"`, `backoff_initial_ms = 0`,
   `restart_limit = 0`, the host logging at error level (a line per failure). The restarts are the bytes appended in a
   5 s window beginning at the first; the same with a C program under supervisord and, in thread isolation, with a
   `svc_loop` that returns an error (see "Side by side with supervisord").
12. **Memory**: 300 copies of an idle plugin (`svc_loop` returns at once, `interval_ms = 1000`) in process isolation;
   after 3 s of settling, the PSS (`smaps_rollup`) of the host, its fork server and every worker, summed and divided
   by 300; beside it the same for supervisord and 300 C programs looping on `nanosleep(1 s)`.
13. **Descriptors**, from the scale workload: 1,000 copies of the idle plugin in process isolation; the entries of the
   host's `/proc/PID/fd` after 3 s of settling, less those of the thread-isolated idle host (no worker: its fixed
   descriptors, the fork server's control socket included), divided by 1,000. The two hosts' fixed descriptors
   differ by one or two between runs (timers the runtime opens when it needs them), so the verdict reads the
   result at two decimals; `IsolationCostTests` shows the exact cost: hosts with 8 and 24 process-isolated
   services hold exactly 16 descriptors apart.
14. **1,000 process-isolated services**: the same run, from the spawn of `servicehost run --isolation process` with a
   soft `RLIMIT_NOFILE` of 1024 (the host raises its soft limit to the hard one itself) to READY=1 on
   `$NOTIFY_SOCKET`, with its STATUS= text.
15. **10,000 thread-isolated services**: 10,000 copies in thread isolation, `--log-level error`; spawn to READY=1 and
   its status. Each running service costs the host about 7 memory mappings, so `vm.max_map_count` (65,530 by default)
   bounds how many start; the others fail with their reason in the log, counted (see "Scale").
16. **Memory per thread-isolated service**: after (15) settled, the host's PSS less the `Pss` of its mappings of the
   staged plugin copies (`/proc/PID/smaps`), divided by the services running: the host's own fixed memory is
   included, spread over them.
17. **Idle, thread isolation**: the host's CPU (schedstat of each of its threads) over 10 s after (15) settled; then
   the same for a C program with as many bare threads as services ran, each looping on `nanosleep(1 s)` (the default
   stack size, as the host's service threads have, and the host's 10 ms timer slack).
"""


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__.split("\n\n")[1])
    results_path, output_path, command = sys.argv[1:4]
    side_path = sys.argv[4] if len(sys.argv) > 4 else None
    side_status = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5].isdigit() else 0
    side, side_failed = load_side_by_side(side_path, side_status)
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
    reload_metric = "file replaced to new version's first svc_loop (ns)"
    # Row 4b, absent from results of runs that predate it: then "not measured".
    process_small = r.get("Reload latency, small plugin, process isolation", {}).get(reload_metric)
    kept = {isolation: r.get(f"Reload latency with 1 MiB of kept state, {isolation} isolation", {}).get(reload_metric)
            for isolation in ("thread", "process")}
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

    def kept_state_row():
        what = "4b. Reload with 1 MiB of kept state (`state_load` in `svc_create`, `state_save` in `svc_stop`): file replaced → new version's first `svc_loop`"
        target = "median ≤ 3 ms, each isolation"
        plain = {"thread": small, "process": process_small}
        measured, extra = [], []
        for isolation in ("thread", "process"):
            with_state, without = kept[isolation], plain[isolation]
            if with_state is None:
                measured.append(f"{isolation} isolation: not measured in this run")
                continue
            measured.append(f"{isolation} isolation: median {with_state['p50'] / 1000:.0f} µs, p90 {with_state['p90'] / 1000:.0f} µs, "
                            f"p99 {with_state['p99'] / 1000:.0f} µs")
            if without is not None:
                extra.append(f"{isolation}: {(with_state['p50'] - without['p50']) / 1000:+.0f} µs over the same plugin without state "
                             f"(median {without['p50'] / 1000:.0f} µs, p99 {without['p99'] / 1000:.0f} µs)")
        if any(kept[isolation] is None for isolation in kept):
            status = "not measured"
        else:
            missed = [isolation for isolation in kept if kept[isolation]["p50"] > 3_000_000]
            status = verdict(not missed) + (f" ({' and '.join(missed)} isolation)" if missed else "")
        return (what, "; ".join(measured), "; ".join(extra), target, status)

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
         f"{process['p50'] / spawn:.2f} × the spawn", "median ≤ 0.5 ×", verdict(process["p50"] <= 0.5 * spawn)),
        ("4. Reload: file replaced → new version's first `svc_loop`",
         f"small plugin: median {small['p50'] / 1000:.0f} µs, p99 {small['p99'] / 1000:.0f} µs; 1 MB plugin: median {large['p50'] / 1000:.0f} µs, p99 {large['p99'] / 1000:.0f} µs",
         "", "1 MB ≤ 2 ms", verdict(large["p50"] <= 2_000_000)),
        kept_state_row(),
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
    if side_path is not None:
        rows += side_rows(side, side_failed, verdict)

    today = datetime.date.today().isoformat()
    with open(output_path, "w", encoding="utf-8") as out:
        out.write("# Performance\n\n")
        out.write(f"Generated by `{command}` on {today} (commit {commit()}), on {machine()}.\n")
        if side_path is None:
            out.write("Every figure below comes from that one run. The baselines (a direct C call, a raw `ffi_call`,\n")
            out.write("`posix_spawn` of a trivial C program, bare C threads) were measured in the same run, on the same machine.\n")
        else:
            out.write("Rows 1 to 10 come from one run of the benchmark suite; the baselines (a direct C call, a raw `ffi_call`,\n")
            out.write("`posix_spawn` of a trivial C program, bare C threads) were measured in the same run, on the same machine.\n")
            out.write("Rows 11 to 17 and the sections \"Side by side with supervisord\" and \"Scale\" come from one run of\n")
            out.write("`Benchmarks/side-by-side.py` right after it, on the same machine, with their own baselines (supervisord,\n")
            out.write("bare C threads) measured in that run.")
            if side_failed:
                out.write(f" **The side-by-side run failed** ({side_failed}): what it did not measure is marked so.")
            out.write("\n")
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
   when it returns `SVC_DONE` and again in the next `svc_create` and `svc_loop`: 10,000 restarts, of a plugin file
   last changed more than 2 s before (within 2 s of a file's change the host also compares its content at each
   restart, a read and a SHA-256 of the file: about 10 µs more for this small plugin).
3. **Restart, process mode**: a plugin in `isolation = "process"` stamps the time and raises `SIGSEGV` on its first
   `svc_loop`; the next worker's first `svc_loop` reads the stamp (the monotonic clock is shared by all processes):
   2,000 crashes. The baseline spawns and waits for a C `main` that returns 0, from the same benchmark process.
4. **Reload**: the plugin file is overwritten in place with the other of two builds, then `Scheduler.restart` is
   called; measured from the end of the write to the new version's first `svc_loop` (200 reloads each). The 1 MB
   plugin carries 1 MB of read-only data in its image. **4b**: the small plugin built to keep 1 MiB (1,048,576 bytes)
   of state, as a plugin with a large cache would: its `svc_create` reads what the previous run kept (`state_load`),
   checks its tag, size and a checksum of every byte while copying it into its own buffer, and its `svc_stop` hands
   it back (`state_save`). A reload stops the old version before it creates the new one, so that save is inside the
   measured time. Every reload is checked to have read the previous run's state whole. Measured in thread isolation
   (the host keeps a `malloc`ed copy) and in process isolation (the bytes travel in a sealed memfd over the worker's
   socket, each way), each beside the same plugin without state in the same isolation. The run's report (below)
   also splits each of these reloads at the plugin's own stamps: its `svc_stop` begun, its `state_save` returned,
   the new `svc_create` begun, the state read.
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
        if side_path is not None:
            out.write(HOW_SIDE_BY_SIDE)
        analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
        if os.path.exists(analysis):
            out.write("\n## Where the time and memory go\n\n")
            text = open(analysis, encoding="utf-8").read()
            out.write(text if text.endswith("\n") else text + "\n")
        if side_path is not None:
            out.write("\n" + "\n".join(side_by_side_section(side, side_failed)))
            out.write("\n" + "\n".join(scale_section(side, side_failed)))
        out.write("\n## The run\n\n")
        out.write("package-benchmark's report of the run, unedited:\n\n")
        text = open(results_path, encoding="utf-8").read()
        start = text.find("## Baseline")
        out.write(text[start:] if start >= 0 else text)


if __name__ == "__main__":
    main()
