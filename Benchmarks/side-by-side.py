#!/usr/bin/env python3
"""ServiceHost side by side with supervisord 4.x, on the same work, in one run.

Usage: Benchmarks/side-by-side.py [--services N] [--window SECONDS]
           [--servicehost PATH] [--only supervisord|process|thread|scale]
           [--scale-process N] [--scale-thread N]

Prints one JSON document on standard output; progress goes to standard error.
About two and a half minutes with the defaults (the scale workload about 70 s
of it). Needs Linux, `cc`, and `supervisor` from PyPI:
when it cannot be imported, `python3 -m pip install --quiet 'supervisor>=4.2,<5'`
is tried, and if that fails only ServiceHost is measured and the document says
why (`"supervisord": {"skipped": ...}`). Every service runs in three columns:
supervisord supervising small C programs, and ServiceHost supervising the same
work as C plugins, in process isolation and in thread isolation.

What is measured
  1. Crash loop: restarts per second. One service that fails at once on every
     start, restarted without delay or limit. Every start appends one byte to a
     counter file (open O_APPEND, write 1 byte, close), so the bytes appended
     in a window that begins at the first byte are the restarts in it. The
     program, and the plugin in process isolation, then die of SIGSEGV. Thread
     isolation cannot survive a SIGSEGV (it would take the whole host down), so
     there the plugin's svc_loop returns an error code instead: the same restart
     policy, without a process (the column's `note` says so).
  2. N idle services (default 300) that wake once a second and do nothing: a
     C program looping on nanosleep(1 s) under supervisord; a plugin whose
     svc_loop returns at once, with interval_ms = 1000, under ServiceHost.
     Measured: the time from spawning the supervisor until every service runs;
     after 3 s of settling, the PSS of the whole process tree (the supervisor
     and all its descendants) with its processes, threads and the supervisor's
     descriptors; then the CPU the whole tree uses in a window, as a
     percentage of one core.
  3. ServiceHost's columns differ only in the sidecars' `isolation`: "process"
     (a worker process per service) or "thread" (a thread of the host each).
  4. Scale (ServiceHost only; `--only scale` runs it alone):
     a. --scale-process N (default 1000) copies of the idle plugin in process
        isolation, the host started with a soft RLIMIT_NOFILE of 1024 (it
        raises its soft limit to the hard one itself, as documented; both
        limits and the host's own "Max open files" are recorded). Spawn to
        READY=1 and its STATUS=, then after settling the host's descriptors
        (/proc/PID/fd) in all and per service, and the PSS, processes and
        threads of the whole tree. Targets: all started within 2 s, at most
        1 host descriptor per service.
     b. --scale-thread N (default 10000) copies in thread isolation. Each
        such service costs the host about 7 memory mappings, so with the
        usual vm.max_map_count = 65530 some fail to start, each with its
        reason: that is the result, with the distinct reasons of the host's
        log (level error) and their counts. Spawn to READY=1, the host's
        mappings and threads, its memory per running service beyond the
        plugins' own (host PSS less the Pss of its mappings of the staged
        plugin copies, which live under its XDG_RUNTIME_DIR; see below),
        and its CPU over the idle window (schedstat, the host alone).
     c. The bare-thread floor, right after (b): side_bare_threads.c with as
        many threads as services ran in (b), each looping on nanosleep(1 s)
        (the default stack size, as the host's service threads have, and the
        host's 10 ms timer slack), over the same window.
        Target: the host's idle CPU at most 1.2 x the floor's.

Why it is fair
  - Same work per service on both sides, from the same C code (see
    Benchmarks/Fixtures/side_*.c), compiled by the same `cc -O2`; the same log
    level (error) on both; core dumps off on both (RLIMIT_CORE = 0).
  - supervisord is set up for its fastest restarts (startsecs = 0,
    autorestart = true, startretries huge) and cheapest logging (no log file
    for the programs' output). Its main loop polls with a 1 s timeout and
    starts an exited program only on the pass after the one that reaped it, so
    a crashing program is restarted about once a second (sooner only when
    something else wakes the loop, e.g. the second of its pipes' EOFs seen in a
    pass of its own; 0.6 to 1.2 a second in 5 s windows here): that bound is
    its design, measured here, not a handicap added here.
  - Log lines written in the crash window are counted: at level error
    ServiceHost logs every failure (a line per restart, to a file), while
    supervisord logs exits at level info, so none; ServiceHost's rate includes
    writing its log.
  - ServiceHost loads private copies of the plugin files, which it writes to
    $XDG_RUNTIME_DIR (else TMPDIR). The shipped systemd unit sets that to
    /run/servicehost, a tmpfs; here each run gets a directory on /dev/shm
    when that is a tmpfs (the document says which). On this VM's root file
    system (ext4 without a journal) creating a file shortly after thousands
    were deleted scans the inode table (ext4's recently_deleted), about 1 ms
    a file, which made the staging of 10,000 copies, not ServiceHost, the
    largest cost of the scale run. The C programs under supervisord are
    loaded from the scratch directory, as they are exec'd without copies.
  - Before every timed start the plugin or program files are synced and the
    machine is waited on until it is 90 % idle over half a second (at most
    30 s): thousands of processes and files of the workload before are
    still being freed by the kernel for a while, and a start measured
    meanwhile came out up to twice as slow.
  - Each supervisor has its control socket on: supervisord's XML-RPC server,
    ServiceHost's control API (--control-socket, in the scratch directory).
  - Readiness: ServiceHost says it itself (READY=1 on $NOTIFY_SOCKET once no
    service is starting, as systemd's Type=notify reads it); supervisord is
    asked over its XML-RPC socket every 10 ms until every program is RUNNING
    (with startsecs = 0, RUNNING means spawned). The polling granularity is in
    the document; the polls also wake supervisord's loop, which if anything
    helps it.
  - CPU is the first field of /proc/PID/task/TID/schedstat (nanoseconds on
    CPU, per task) for every task of every process in the tree, because
    per-process tick counters (utime/stime, 10 ms ticks) round hundreds of
    idle processes, each running microseconds a second, down to zero. Only
    tasks present at both reads count; the document says how many came or went.
    `timeslices_per_second` is the third field (times a task was put on a
    CPU): about the wakeups per second.
  - PSS divides every shared page among the processes that map it, so the sum
    over a tree is what the tree costs, with no library counted twice.
"""
import argparse
import contextlib
import http.client
import importlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Benchmarks" / "Fixtures"
INCLUDE = ROOT / "include"
DEADLINE_S = 60.0       # the longest any wait may take
STOP_DEADLINE_S = 20.0  # from SIGTERM to SIGKILL
LEFTOVER_DEADLINE_S = 5.0  # for descendants to follow their supervisor out
SETTLE_S = 3.0
RPC_POLL_S = 0.010
SUPERVISORD_RUNNING = 20  # supervisor.states.ProcessStates.RUNNING
COLUMNS = ("supervisord", "process", "thread")
SCALE_DEADLINE_S = 180.0  # the start of 10,000 thread-isolated services may take a minute
SCALE_SOFT_NOFILE = 1024  # the usual soft RLIMIT_NOFILE the process-isolated scale run starts with
BARE_THREADS_SLACK_NS = 10_000_000  # the timer slack the host gives a service with interval_ms = 1000
SCALE_PROCESS_START_TARGET_S = 2.0
SCALE_PROCESS_DESCRIPTORS_TARGET = 1.0
SCALE_THREAD_START_TARGET_S = 3.0
SCALE_THREAD_MEMORY_TARGET_KIB = 20.0
SCALE_THREAD_IDLE_TARGET_RATIO = 1.2
SUPERVISOR_REQUIREMENT = "supervisor>=4.2,<5"


class BenchmarkError(Exception):
    """A wait past its deadline, or a supervisor that died under a measurement."""


def progress(message):
    print(f"[side-by-side] {message}", file=sys.stderr, flush=True)


# Waiting, always with a deadline -------------------------------------------


def wait_for(what, condition, process=None, deadline=DEADLINE_S, interval=0.005):
    """Calls condition() until it returns something truthy, and returns that."""
    end = time.monotonic() + deadline
    while True:
        result = condition()
        if result:
            return result
        check_alive(process, what)
        if time.monotonic() > end:
            raise BenchmarkError(f"{what}: not within {deadline:.0f} s")
        time.sleep(interval)


def sleep_watching(seconds, process, what):
    """Sleeps, but fails as soon as the supervisor exits."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        check_alive(process, what)
        time.sleep(min(left, 0.1))


def check_alive(process, what):
    if process is not None and process.poll() is not None:
        raise BenchmarkError(f"{what}: the supervisor exited first, with status {process.returncode}")


# /proc ------------------------------------------------------------------------


def stat_fields(pid):
    """/proc/PID/stat from field 3 (state) on, or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def process_tree(root):
    """{pid: start time} of root and all its descendants."""
    return {pid: started for pid, (started, _) in process_tree_with_depth(root).items()}


def process_tree_with_depth(root):
    """{pid: (start time, depth)} of root (depth 0) and all its descendants,
    found by their parent pids."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := stat_fields(entry)):
            children.setdefault(int(fields[1]), []).append((int(entry), fields[19]))
    root_fields = stat_fields(root)
    if root_fields is None:
        return {}
    tree, todo = {root: (root_fields[19], 0)}, [root]
    while todo:
        parent = todo.pop()
        for pid, started in children.get(parent, []):
            tree[pid] = (started, tree[parent][1] + 1)
            todo.append(pid)
    return tree


def alive(members):
    """The members (pid: start time) still running: same start time, not a zombie."""
    left = {}
    for pid, started in members.items():
        fields = stat_fields(pid)
        if fields and fields[19] == started and fields[0] != "Z":
            left[pid] = started
    return left


def task_ids(pid):
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def command_name(pid):
    """The program and its subcommand or module, e.g. "servicehost run",
    "/proc/self/exe __fork-server", "python3 -m supervisor.supervisord"."""
    try:
        words = [word.decode(errors="replace") for word in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                 if word]
    except OSError:
        return "?"
    if not words:
        return "?"
    name = [words[0] if words[0].startswith("/proc/") else os.path.basename(words[0])]
    for word in words[1:3]:
        if word.startswith("-") and word != "-m":
            break
        name.append(word)
    return " ".join(name)


def descriptor_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def file_size(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def lines_between(path, start, end):
    with open(path, "rb") as file:
        file.seek(start)
        return file.read(end - start).count(b"\n")


# Measurements -----------------------------------------------------------------


def memory(root, services):
    """PSS, processes and threads of the whole tree under root, with the PSS
    of each kind of process: its command and its depth below the supervisor
    (depth 0), e.g. "/proc/self/exe __fork-server (depth 2)" for workers."""
    total, processes, threads, kinds = 0, 0, 0, {}
    for pid, (_, depth) in process_tree_with_depth(root).items():
        pss = pss_kib(pid)
        if pss is None:
            continue
        total += pss
        processes += 1
        threads += len(task_ids(pid))
        kind = kinds.setdefault(f"{command_name(pid)} (depth {depth})", {"processes": 0, "pss_kib": 0})
        kind["processes"] += 1
        kind["pss_kib"] += pss
    return {"pss_kib": total, "pss_kib_per_service": round(total / services, 1),
            "processes": processes, "threads": threads, "by_command": kinds}


def schedstat_sample(pids):
    """(time, {(pid, tid): (ns on CPU, timeslices)}) for every task of pids."""
    begun = time.monotonic()
    sample = {}
    for pid in pids:
        for tid in task_ids(pid):
            try:
                fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            except OSError:
                continue
            sample[(pid, tid)] = (int(fields[0]), int(fields[2]))
    return (begun + time.monotonic()) / 2, sample


def cpu_between(first, second):
    """CPU of the tasks present in both samples, as a share of one core."""
    (t0, before), (t1, after) = first, second
    both = before.keys() & after.keys()
    nanoseconds = sum(after[task][0] - before[task][0] for task in both)
    slices = sum(after[task][1] - before[task][1] for task in both)
    elapsed = t1 - t0
    return {"percent_of_one_core": round(nanoseconds / (elapsed * 1e9) * 100, 3),
            "cpu_ms": round(nanoseconds / 1e6, 2), "window_s": round(elapsed, 3),
            "timeslices_per_second": round(slices / elapsed, 1),
            "tasks_measured": len(both), "tasks_vanished": len(before.keys() - after.keys()),
            "tasks_appeared": len(after.keys() - before.keys())}


def idle_cpu(process, window):
    """CPU of every task in the tree over window seconds."""
    first = schedstat_sample(process_tree(process.pid))
    sleep_watching(window, process, "idle CPU window")
    return cpu_between(first, schedstat_sample(process_tree(process.pid)))


def settle_and_measure(process, services, window):
    """The idle workload's steady state: memory, then CPU, then descriptors."""
    sleep_watching(SETTLE_S, process, "settling")
    result = {"memory": memory(process.pid, services), "cpu": idle_cpu(process, window)}
    count = descriptor_count(process.pid)
    result["supervisor_descriptors"] = {"count": count, "per_service": round(count / services, 2)}
    return result


def count_restarts(counter, log, process, window):
    """Restarts in window seconds from the first start, and the CPU of the
    supervisor's own processes (those alive through the whole window)."""
    wait_for("the first start of the crashing service", lambda: file_size(counter) > 0, process)
    starts, log_start = file_size(counter), file_size(log)
    supervisor_processes = process_tree(process.pid)
    first = schedstat_sample(supervisor_processes)
    sleep_watching(window, process, "crash-loop window")
    second = schedstat_sample(supervisor_processes)
    restarts = file_size(counter) - starts
    cpu = cpu_between(first, second)
    return {"restarts": restarts, "window_s": cpu["window_s"],
            "restarts_per_second": round(restarts / cpu["window_s"], 1),
            "supervisor_cpu_percent_of_one_core": cpu["percent_of_one_core"],
            "log_lines_in_window": lines_between(log, log_start, file_size(log))}


# Running a supervisor, always stopped at the end ------------------------------


def no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# Where ServiceHost keeps its staged plugin copies during a run: a tmpfs, as
# the shipped systemd unit gives it (XDG_RUNTIME_DIR=/run/servicehost). Set in
# main() to a directory under /dev/shm when that is a tmpfs; None: TMPDIR (work).
RUNTIME_PARENT = None


def tmpfs_runtime_parent():
    """A fresh directory on /dev/shm if it is a tmpfs mounted without noexec, else None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "/dev/shm" and fields[2] == "tmpfs" and "noexec" not in fields[3].split(","):
            return Path(tempfile.mkdtemp(prefix="side-by-side-runtime-", dir="/dev/shm"))
    return None


def runtime_directory(work):
    """The XDG_RUNTIME_DIR a ServiceHost run in `work` gets: its own directory on the tmpfs, else work."""
    if RUNTIME_PARENT is None:
        return work
    directory = RUNTIME_PARENT / work.name
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def servicehost_environment(work, notify_socket=None):
    """environment(), with XDG_RUNTIME_DIR for the staged plugin copies."""
    env = environment(work, notify_socket)
    env["XDG_RUNTIME_DIR"] = str(runtime_directory(work))
    return env


def environment(work, notify_socket=None):
    """The caller's environment, without systemd's variables, with TMPDIR in work."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("NOTIFY_SOCKET", "XDG_RUNTIME_DIR", "LD_PRELOAD")
           and not key.startswith(("LISTEN_", "WATCHDOG_"))}
    env["TMPDIR"] = str(work)
    if notify_socket:
        env["NOTIFY_SOCKET"] = str(notify_socket)
    return env


@contextlib.contextmanager
def supervisor(argv, env, output, label, preexec=no_core_dumps):
    """Runs a supervisor as the leader of a session of its own; its tree is
    stopped on the way out, whatever happened."""
    with open(output, "ab") as log:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True, preexec_fn=preexec)
    process.start_time = (stat_fields(process.pid) or [None] * 20)[19]
    try:
        yield process
    finally:
        stop_tree(process, label)


def stop_tree(process, label):
    """SIGTERM, SIGKILL after the deadline; then SIGKILL any descendant or
    session member left. Returns the seconds the supervisor took to exit.
    Safe to call twice."""
    # Popen.poll() reaps: the tree of a reaped pid could be someone else's.
    members = process_tree(process.pid) if process.poll() is None else {}
    begun = time.monotonic()
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        progress(f"{label}: still running {STOP_DEADLINE_S:.0f} s after SIGTERM; SIGKILL to its tree")
        members.update(process_tree(process.pid))
        kill(alive(members) | session_members(process))
        process.wait(DEADLINE_S)
    stopped = time.monotonic() - begun
    end = time.monotonic() + LEFTOVER_DEADLINE_S
    while (left := alive(members) | session_members(process)) and time.monotonic() < end:
        time.sleep(0.05)
    if left:
        progress(f"{label}: {len(left)} of its processes outlived it; SIGKILL")
        kill(left)
    return round(stopped, 3)


def session_members(process):
    """{pid: start time} of the live processes in the session the supervisor
    leads: its children that outlived it (supervisord's keep its session).
    A pid that leads a session with members is not reused by the kernel."""
    leader = stat_fields(process.pid)
    if leader and leader[19] != process.start_time:
        return {}
    members = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := stat_fields(entry)) and int(fields[3]) == process.pid and fields[0] != "Z":
            members[int(entry)] = fields[19]
    return members


def kill(members):
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ServiceHost ------------------------------------------------------------------


def write_plugins(directory, plugin, services, sidecar):
    """services copies of plugin, S0000 to S(N-1), each with the same sidecar."""
    directory.mkdir(mode=0o700)
    for index in range(services):
        name = f"S{index:04d}"
        shutil.copyfile(plugin, directory / f"lib{name}.so")
        os.chmod(directory / f"lib{name}.so", 0o755)
        (directory / f"{name}.toml").write_text(sidecar)
        os.chmod(directory / f"{name}.toml", 0o644)
    # Written back now, not by the kernel's flusher during the start measured next.
    os.sync()
    wait_until_quiet()


QUIET_IDLE_SHARE = 0.9  # of all CPUs over one sample
QUIET_SAMPLE_S = 0.5
QUIET_DEADLINE_S = 30.0


def cpu_idle_share(seconds):
    """The share of CPU time the whole machine spent idle over `seconds` (/proc/stat)."""
    def read():
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all
    idle_before, all_before = read()
    time.sleep(seconds)
    idle_after, all_after = read()
    return (idle_after - idle_before) / max(1, all_after - all_before)


def wait_until_quiet():
    """Waits (at most QUIET_DEADLINE_S) until the machine is at least 90 % idle
    over half a second: the kernel's work left from the previous workload (freeing
    thousands of files and processes) would otherwise be timed with the next start."""
    end = time.monotonic() + QUIET_DEADLINE_S
    waited = time.monotonic()
    while (share := cpu_idle_share(QUIET_SAMPLE_S)) < QUIET_IDLE_SHARE and time.monotonic() < end:
        pass
    if share < QUIET_IDLE_SHARE:
        progress(f"the machine was still {100 * (1 - share):.0f} % busy after {QUIET_DEADLINE_S:.0f} s; measuring anyway")
    elif time.monotonic() - waited > 2 * QUIET_SAMPLE_S:
        progress(f"waited {time.monotonic() - waited:.1f} s for the machine to be quiet")


def servicehost_argv(executable, work, plugins):
    return [executable, "run", "--plugins", str(plugins), "--log-level", "error",
            "--control-socket", str(work / "control.sock")]


@contextlib.contextmanager
def notify_listener(path):
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        listener.bind(str(path))
        yield listener
    finally:
        listener.close()


def wait_ready(listener, process, deadline=DEADLINE_S):
    """Waits for READY=1; returns (when it came, its STATUS= text)."""
    end = time.monotonic() + deadline
    while (left := end - time.monotonic()) > 0:
        readable, _, _ = select.select([listener], [], [], min(left, 0.1))
        if readable:
            lines = listener.recv(65536).decode(errors="replace").split("\n")
            if "READY=1" in lines:
                now = time.monotonic()
                return now, next((line[7:] for line in lines if line.startswith("STATUS=")), "")
        check_alive(process, "READY=1")
    raise BenchmarkError(f"READY=1: not within {deadline:.0f} s")


def servicehost_crash(args, build, work, isolation):
    counter = work / "starts"
    sidecar = (f'isolation = "{isolation}"\nrestart = "always"\nbackoff_initial_ms = 0\nrestart_limit = 0\n\n'
               f"[config]\ncounter_file = {json.dumps(str(counter))}\n")
    if isolation == "thread":
        sidecar += 'fail = "error"\n'
    plugins = work / "plugins"
    write_plugins(plugins, build / "side_crash_plugin.so", 1, sidecar)
    log = work / "servicehost.log"
    with supervisor(servicehost_argv(args.servicehost, work, plugins), servicehost_environment(work), log,
                    f"servicehost ({isolation})") as process:
        result = count_restarts(counter, log, process, args.crash_window)
        result["stop_s"] = stop_tree(process, "servicehost")
    if isolation == "thread":
        result["note"] = ("thread isolation cannot survive a SIGSEGV (it would take the whole host down), "
                          "so here svc_loop returns an error code (-1) instead of crashing; same restart policy")
    crash = "svc_loop returns -1" if isolation == "thread" else "svc_loop raises SIGSEGV in the worker"
    result["how"] = (f"counter-file bytes appended by svc_create in the window, then {crash}; sidecar "
                     'restart = "always", backoff_initial_ms = 0, restart_limit = 0 (no intensity limit)')
    return result


def servicehost_idle(args, build, work, isolation):
    plugins = work / "plugins"
    write_plugins(plugins, build / "side_idle_plugin.so", args.services,
                  f'isolation = "{isolation}"\ninterval_ms = 1000\n')
    argv = servicehost_argv(args.servicehost, work, plugins)
    with notify_listener(work / "notify.sock") as listener:
        begun = time.monotonic()
        with supervisor(argv, servicehost_environment(work, work / "notify.sock"), work / "servicehost.log",
                        f"servicehost ({isolation})") as process:
            ready_at, status = wait_ready(listener, process)
            result = {"start": {"seconds": round(ready_at - begun, 3), "ready_status": status,
                                "how": "spawn of `servicehost run` to READY=1 on NOTIFY_SOCKET"}}
            result.update(settle_and_measure(process, args.services, args.idle_window))
            result["stop_s"] = stop_tree(process, "servicehost")
    if not status.startswith(f"{args.services} running"):
        result["warning"] = f"READY=1 came with STATUS={status!r}, not every service running"
    return result


# Scale (ServiceHost only) ----------------------------------------------------


def servicehost_states(work):
    """{state: services} from GET /v1/host on the control socket, or None."""
    connection = UnixHTTPConnection(str(work / "control.sock"))
    try:
        connection.request("GET", "/v1/host")
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            return None
        return json.loads(body).get("states")
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def status_counts(status):
    """{"running": 7457, "failed": 2543} from "7457 running, 2543 failed"."""
    counts = {}
    for part in status.split(","):
        words = part.split()
        if len(words) == 2 and words[0].isdigit():
            counts[words[1]] = int(words[0])
    return counts


def max_open_files(pid):
    """The "Max open files" line of /proc/PID/limits, with its soft and hard limits."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                fields = line.split()
                return {"line": line.strip(), "soft": fields[3], "hard": fields[4]}
    except OSError:
        pass
    return None


def descriptor_kinds(pid):
    """How many of the process's descriptors are sockets, pidfds, files, …"""
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("socket:", "pipe:")):
            kind = target.split(":", 1)[0]
        elif target.startswith("anon_inode:"):
            kind = target
        else:
            kind = "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda item: -item[1]))


def mapping_count(pid):
    with open(f"/proc/{pid}/maps", "rb") as maps:
        return sum(1 for _ in maps)


def plugin_copies_pss(pid, under):
    """(Pss in KiB, mappings, distinct files) of the mappings in /proc/PID/smaps
    whose file is a .so under `under` (the host's staged plugin copies)."""
    prefix = str(under).rstrip("/") + "/"
    total, mappings, files, counting = 0, 0, set(), False
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            if line[0] in "0123456789abcdef":
                fields = line.split(None, 5)
                path = fields[5].rstrip("\n") if len(fields) > 5 else ""
                path = path.removesuffix(" (deleted)")
                counting = path.startswith(prefix) and path.endswith(".so")
                if counting:
                    mappings += 1
                    files.add(path)
            elif counting and line.startswith("Pss:"):
                total += int(line.split()[1])
    return total, mappings, len(files)


def failure_reasons(log, work, start=0, end=None, limit=5):
    """The distinct reasons in the host's log between byte offsets start and
    end (at level error, every line is a failure), with service names made S…
    and the scratch directory $WORK: [{"reason", "count"}], most frequent
    first, at most limit, and how many lines there were in all."""
    reasons, lines = {}, 0
    with open(log, "rb") as file:
        file.seek(start)
        chunk = file.read() if end is None else file.read(max(0, end - start))
    for line in chunk.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        lines += 1
        # swift-log's text line: TIMESTAMP LEVEL LABEL: [KEY=VALUE ...] [MODULE] MESSAGE
        shape = re.match(r"\S+ (\w+) [^:\s]+: (?:\S+=\S+ )*(?:\[[^\]]*\] )?(.*)$", line)
        reason = f"{shape[1]}: {shape[2]}" if shape else line
        reason = re.sub(r"S\d{4,}(?!\d)", "S…", reason.replace(str(work), "$WORK"))
        reasons[reason] = reasons.get(reason, 0) + 1
    ranked = sorted(reasons.items(), key=lambda item: -item[1])
    return {"log_lines": lines, "distinct": len(reasons),
            "top": [{"reason": reason, "count": count} for reason, count in ranked[:limit]]}


def wait_ready_at_scale(listener, process, work, log):
    """wait_ready with the scale deadline; when READY=1 does not come, the
    error says what the host had started by then, and why others failed."""
    try:
        return wait_ready(listener, process, SCALE_DEADLINE_S)
    except BenchmarkError as error:
        states = servicehost_states(work) if process.poll() is None else None
        reasons = failure_reasons(log, work, limit=3)["top"]
        raise BenchmarkError(f"{error}; the host's services by state then: {states}; "
                             f"its log's most frequent lines: {reasons}") from None


def soft_nofile_limit(soft):
    """A preexec_fn: no core dumps, and the soft RLIMIT_NOFILE at soft (under the hard one)."""
    def preexec():
        no_core_dumps()
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return preexec


def scale_process(args, build, work):
    """N process-isolated idle services started with a soft RLIMIT_NOFILE of 1024."""
    services = args.scale_process
    plugins = work / "plugins"
    write_plugins(plugins, build / "side_idle_plugin.so", services, 'isolation = "process"\ninterval_ms = 1000\n')
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft = SCALE_SOFT_NOFILE if hard == resource.RLIM_INFINITY else min(SCALE_SOFT_NOFILE, hard)
    argv = servicehost_argv(args.servicehost, work, plugins) + ["--isolation", "process"]
    log = work / "servicehost.log"
    with notify_listener(work / "notify.sock") as listener:
        begun = time.monotonic()
        with supervisor(argv, servicehost_environment(work, work / "notify.sock"), log, "servicehost (scale, process)",
                        soft_nofile_limit(soft)) as process:
            ready_at, status = wait_ready_at_scale(listener, process, work, log)
            host_limit = max_open_files(process.pid)
            sleep_watching(SETTLE_S, process, "settling")
            states = servicehost_states(work)
            descriptors = descriptor_count(process.pid)
            kinds = descriptor_kinds(process.pid)
            tree = memory(process.pid, services)
            logged = failure_reasons(log, work)
            before_stop = file_size(log)
            stop_s = stop_tree(process, "servicehost")
    start = ready_result(status, begun, ready_at, "process")
    running, seconds = start["started"], start["seconds"]
    result = {
        "services": services,
        "start": start,
        "states_after_settling": states,
        "nofile_limit": {"soft_at_spawn": soft, "hard_at_spawn": "unlimited" if hard == resource.RLIM_INFINITY else hard,
                         "host_proc_limits": host_limit,
                         "note": "the host raises its soft RLIMIT_NOFILE to the hard limit at start (documented)"},
        "host_descriptors": {"count": descriptors, "per_service": round(descriptors / services, 3),
                             "per_running_service": round(descriptors / running, 3) if running else None,
                             "by_kind": kinds},
        "memory": tree,
        "stop_s": stop_s,
        "log_until_stop": logged,
        "log_while_stopping": failure_reasons(log, work, start=before_stop),
        "targets": {"all_started_within_s": SCALE_PROCESS_START_TARGET_S,
                    "host_descriptors_per_service_at_most": SCALE_PROCESS_DESCRIPTORS_TARGET},
    }
    # The descriptors' verdict needs a host with no worker to compare with (the
    # idle thread-isolation run): render-performance.py gives it.
    result["met"] = {"start": running == services and seconds <= SCALE_PROCESS_START_TARGET_S}
    progress(f"scale process: {running} of {services} running in {seconds} s "
             f"(target all within {SCALE_PROCESS_START_TARGET_S:g} s); {descriptors} host descriptors, "
             f"{descriptors / services:.2f} per service (target ≤ {SCALE_PROCESS_DESCRIPTORS_TARGET:g})")
    return result


def ready_result(status, begun, ready_at, isolation):
    """How a scale run's start went: seconds to READY=1 and its STATUS= counts."""
    counts = status_counts(status)
    return {"seconds": round(ready_at - begun, 3), "ready_status": status, "started": counts.get("running", 0),
            "failed": counts.get("failed", 0),
            "how": f"spawn of `servicehost run --isolation {isolation}` to READY=1 on NOTIFY_SOCKET"}


def scale_thread(args, build, work):
    """N thread-isolated idle services, then the bare-thread floor for as many
    threads as services ran."""
    services = args.scale_thread
    plugins = work / "plugins"
    write_plugins(plugins, build / "side_idle_plugin.so", services, 'isolation = "thread"\ninterval_ms = 1000\n')
    argv = servicehost_argv(args.servicehost, work, plugins) + ["--isolation", "thread"]
    log = work / "servicehost.log"
    with notify_listener(work / "notify.sock") as listener:
        begun = time.monotonic()
        with supervisor(argv, servicehost_environment(work, work / "notify.sock"), log,
                        "servicehost (scale, thread)") as process:
            ready_at, status = wait_ready_at_scale(listener, process, work, log)
            sleep_watching(SETTLE_S, process, "settling")
            states = servicehost_states(work)
            maps = mapping_count(process.pid)
            threads = len(task_ids(process.pid))
            host_pss = pss_kib(process.pid)
            plugins_pss, plugin_mappings, plugin_files = plugin_copies_pss(process.pid, runtime_directory(work))
            first = schedstat_sample([process.pid])
            sleep_watching(args.idle_window, process, "idle CPU window")
            cpu = cpu_between(first, schedstat_sample([process.pid]))
            reasons = failure_reasons(log, work)
            before_stop = file_size(log)
            stop_s = stop_tree(process, "servicehost")
    start = ready_result(status, begun, ready_at, "thread")
    running, seconds = start["started"], start["seconds"]
    beyond = host_pss - plugins_pss if host_pss is not None else None
    result = {
        "services": services,
        "start": start,
        "states_after_settling": states,
        "failure_reasons": reasons,
        "log_while_stopping": failure_reasons(log, work, start=before_stop),
        "vm_max_map_count": int(Path("/proc/sys/vm/max_map_count").read_text()),
        "host_mappings": {"count": maps, "per_running_service": round(maps / running, 2) if running else None},
        "host_threads": threads,
        "host_memory": {"pss_kib": host_pss, "plugin_copies_pss_kib": plugins_pss,
                        "plugin_copies_mappings": plugin_mappings, "plugin_copies_files": plugin_files,
                        "beyond_plugins_kib": beyond,
                        "beyond_plugins_kib_per_running_service": round(beyond / running, 2)
                        if running and beyond is not None else None,
                        "how": ("host PSS (smaps_rollup) less the Pss of every mapping in /proc/PID/smaps of a "
                                ".so under the host's XDG_RUNTIME_DIR (its staged plugin copies), over the running services")},
        "host_cpu": cpu,
        "stop_s": stop_s,
        "targets": {"all_started_within_s": SCALE_THREAD_START_TARGET_S,
                    "host_memory_beyond_plugins_kib_per_service_at_most": SCALE_THREAD_MEMORY_TARGET_KIB,
                    "idle_cpu_times_bare_threads_at_most": SCALE_THREAD_IDLE_TARGET_RATIO},
    }
    progress(f"scale thread: {running} of {services} running in {seconds} s ({status}); "
             f"host CPU {cpu['percent_of_one_core']} % of one core; bare-thread floor for {running} threads ...")
    floor = bare_threads_floor(build, work, running, args.idle_window) if running else {"skipped": "no service ran"}
    result["bare_threads"] = floor
    ratio = None
    if floor.get("cpu") and floor["cpu"]["cpu_ms"] > 0:
        ratio = round((cpu["cpu_ms"] / cpu["window_s"]) / (floor["cpu"]["cpu_ms"] / floor["cpu"]["window_s"]), 3)
    result["idle_cpu_times_bare_threads"] = ratio
    progress(f"scale thread: bare dlopen floor for {services} plugin files ...")
    result["bare_dlopen"] = bare_dlopen_floor(build, plugins, services)
    per_service = result["host_memory"]["beyond_plugins_kib_per_running_service"]
    result["met"] = {"start": running == services and seconds <= SCALE_THREAD_START_TARGET_S,
                     "host_memory": per_service is not None and per_service <= SCALE_THREAD_MEMORY_TARGET_KIB,
                     "idle_cpu": ratio is not None and ratio <= SCALE_THREAD_IDLE_TARGET_RATIO}
    return result


def bare_dlopen_floor(build, plugins, services):
    """Seconds side_bare_dlopen takes to dlopen the same plugin files in one process."""
    files = "".join(f"{plugins / f'libS{index:04d}.so'}\n" for index in range(services))
    try:
        done = subprocess.run([str(build / "side_bare_dlopen")], input=files, capture_output=True, text=True,
                              timeout=SCALE_DEADLINE_S, preexec_fn=no_core_dumps)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {SCALE_DEADLINE_S:.0f} s"}
    said = done.stdout.strip()
    found = re.match(r"opened (\d+) in ([\d.]+) s; 1,000 in ([\d.]+) s; half in ([\d.]+) s", said)
    if not found:
        return {"error": said or done.stderr.strip() or f"exit status {done.returncode}"}
    return {"files": int(found[1]), "seconds": float(found[2]), "first_1000_s": float(found[3]),
            "first_half_s": float(found[4]),
            "how": ("Benchmarks/Fixtures/side_bare_dlopen.c: dlopen(RTLD_NOW | RTLD_LOCAL) of the same plugin files, "
                    "one after another in one C process (glibc walks every loaded image on each dlopen)")}


def bare_threads_floor(build, work, threads, window):
    """CPU of side_bare_threads with `threads` sleepers, over the same window."""
    output = work / "bare-threads.out"
    argv = [str(build / "side_bare_threads"), str(threads), str(BARE_THREADS_SLACK_NS)]
    with supervisor(argv, environment(work), output, "bare threads") as process:
        line = wait_for("the bare threads started",
                        lambda: next((line for line in output.read_text().splitlines() if line.startswith("started")),
                                     None) if output.exists() else None,
                        process, deadline=SCALE_DEADLINE_S, interval=0.05)
        sleep_watching(SETTLE_S, process, "settling")
        first = schedstat_sample([process.pid])
        sleep_watching(window, process, "bare-thread CPU window")
        cpu = cpu_between(first, schedstat_sample([process.pid]))
        tasks = len(task_ids(process.pid))
        pss = pss_kib(process.pid)
        stop_s = stop_tree(process, "bare threads")
    return {"threads": threads, "program_said": line, "tasks": tasks, "pss_kib": pss, "cpu": cpu, "stop_s": stop_s,
            "how": (f"Benchmarks/Fixtures/side_bare_threads.c: {threads} pthreads (default stack size, as the host's service threads, timer slack "
                    f"{BARE_THREADS_SLACK_NS // 1_000_000} ms as the host gives interval_ms = 1000) looping on "
                    "nanosleep(1 s); schedstat of its tasks over the same window, after the same settling")}



# supervisord --------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix_http_server socket."""

    def __init__(self, path):
        super().__init__()
        self.socket_path = str(path)

    def make_connection(self, host):
        if self._connection[1] is None:
            self._connection = host, UnixHTTPConnection(self.socket_path)
        return self._connection[1]


def ensure_supervisor():
    """(version, None) when supervisord 4.x can run, else (None, why not)."""
    version = installed_supervisor()
    if version and version.startswith("4."):
        return version, None
    progress(f"supervisor {version or 'is not installed'}; trying pip install '{SUPERVISOR_REQUIREMENT}'")
    command = [sys.executable, "-m", "pip", "install", "--quiet", SUPERVISOR_REQUIREMENT]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"{shlex.join(command)} failed: {error}"
    if run.returncode != 0:
        why = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
        return None, f"{shlex.join(command)} failed: {why}"
    importlib.invalidate_caches()
    version = installed_supervisor()
    if not (version and version.startswith("4.")):
        return None, f"after pip install, supervisor is {version or 'still not importable'}"
    return version, None


def installed_supervisor():
    try:
        importlib.import_module("supervisor.supervisord")
        return importlib.metadata.version("supervisor")
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return None


def supervisord_conf(work, services, program):
    """A supervisord.conf with its RPC socket in work and one [program] section."""
    sections = f"""\
[unix_http_server]
file = {work}/supervisor.sock

[supervisord]
nodaemon = true
logfile = {work}/supervisord.log
loglevel = error
pidfile = {work}/supervisord.pid
childlogdir = {work}
minfds = {max(1024, 4 * services + 64)}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

{program}"""
    path = work / "supervisord.conf"
    path.write_text(sections)
    return path


def program_section(name, command, numprocs):
    """A [program] restarted at once on any exit, with no log files."""
    return f"""\
[program:{name}]
command = {command}
numprocs = {numprocs}
process_name = %(program_name)s_%(process_num)04d
autostart = true
autorestart = true
; RUNNING as soon as spawned; an exit from RUNNING is restarted with no backoff
startsecs = 0
startretries = 1000000
; a death by a signal never matches an exit code: every exit is unexpected
exitcodes = 0
stdout_logfile = NONE
stderr_logfile = NONE
"""


def supervisord_argv(conf):
    return [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)]


def wait_all_running(work, process, services):
    """Polls getAllProcessInfo every RPC_POLL_S until services are RUNNING:
    (when the answer that showed it arrived, how many polls it took)."""
    rpc = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(work / "supervisor.sock"))
    polls = 0

    def all_running():
        nonlocal polls
        polls += 1
        try:
            infos = rpc.supervisor.getAllProcessInfo()
        except (OSError, http.client.HTTPException, xmlrpc.client.Fault):
            rpc("close")()
            return None
        running = sum(info["state"] == SUPERVISORD_RUNNING for info in infos)
        return time.monotonic() if running >= services else None

    try:
        return wait_for(f"{services} supervisord programs RUNNING", all_running, process, interval=RPC_POLL_S), polls
    finally:
        rpc("close")()


def supervisord_crash(args, build, work):
    counter = work / "starts"
    command = f"{shlex.quote(str(build / 'side_crash_program'))} {shlex.quote(str(counter))}"
    conf = supervisord_conf(work, 1, program_section("crash", command, 1))
    log = work / "supervisord.log"
    log.touch()
    with supervisor(supervisord_argv(conf), environment(work), work / "supervisord.out", "supervisord") as process:
        result = count_restarts(counter, log, process, args.crash_window)
        result["stop_s"] = stop_tree(process, "supervisord")
    result["how"] = ("counter-file bytes appended by the program in the window; autorestart = true, "
                     "startsecs = 0, startretries = 1000000; the program dies of SIGSEGV")
    result["note"] = ("supervisord's main loop polls with a 1 s timeout and restarts an exited program on the "
                      "pass after the one that reaped it: about one restart a second by design (sooner only when "
                      "something else, such as the second pipe's EOF, wakes the loop)")
    return result


def supervisord_idle(args, build, work):
    command = shlex.quote(str(build / "side_idle_program"))
    conf = supervisord_conf(work, args.services, program_section("idle", command, args.services))
    os.sync()
    wait_until_quiet()
    begun = time.monotonic()
    with supervisor(supervisord_argv(conf), environment(work), work / "supervisord.out", "supervisord") as process:
        running_at, polls = wait_all_running(work, process, args.services)
        result = {"start": {"seconds": round(running_at - begun, 3), "polls": polls,
                            "poll_interval_ms": RPC_POLL_S * 1000,
                            "how": ("spawn of supervisord to the arrival of the first supervisor.getAllProcessInfo "
                                    "answer with every program RUNNING (state 20), asked over XML-RPC on its unix "
                                    "socket every 10 ms after the previous answer; with startsecs = 0 RUNNING "
                                    "means spawned")}}
        result.update(settle_and_measure(process, args.services, args.idle_window))
        result["stop_s"] = stop_tree(process, "supervisord")
    return result


# The run ------------------------------------------------------------------------


def compile_fixtures(build):
    """The two plugins and the three programs, built as users would ship them."""
    for name, shared in (("side_crash_plugin", True), ("side_idle_plugin", True),
                         ("side_crash_program", False), ("side_idle_program", False),
                         ("side_bare_threads", False), ("side_bare_dlopen", False)):
        output = build / (f"{name}.so" if shared else name)
        flags = ["-shared", "-fPIC"] if shared else ["-pthread", "-ldl"]
        subprocess.run(["cc", "-O2", "-I", str(INCLUDE), *flags, "-o", str(output), str(FIXTURES / f"{name}.c")],
                       check=True, timeout=DEADLINE_S)


def measure(label, scratch, function):
    """One column of one workload, given a fresh directory; an error becomes {"error": ...}."""
    progress(f"{label} ...")
    work = Path(tempfile.mkdtemp(prefix=label.replace(" ", "-") + "-", dir=scratch))
    try:
        result = function(work)
    except (BenchmarkError, OSError, subprocess.SubprocessError) as error:
        progress(f"{label}: {error}")
        return {"error": str(error)}
    progress(f"{label}: {json.dumps(result)}")
    return result


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "python": platform.python_version()}


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def servicehost_version(executable):
    try:
        return subprocess.run([executable, "--version"], capture_output=True, text=True,
                              timeout=DEADLINE_S).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({error})"


def summary(document):
    """The headline figure of each column of each workload, side by side."""
    def pick(workload, *path):
        row = {}
        for column, result in document[workload].items():
            value = result
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            row[column] = value
        return row

    def scale(run, *path):
        value = document.get("scale", {}).get(run)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    headline = {"crash_restarts_per_second": pick("crash_loop", "restarts_per_second"),
            "idle_start_s": pick("idle", "start", "seconds"),
            "idle_pss_kib_per_service": pick("idle", "memory", "pss_kib_per_service"),
            "idle_cpu_percent_of_one_core": pick("idle", "cpu", "percent_of_one_core"),
            "idle_processes": pick("idle", "memory", "processes"),
            "idle_threads": pick("idle", "memory", "threads"),
            "idle_supervisor_descriptors_per_service": pick("idle", "supervisor_descriptors", "per_service")}
    if "scale" in document:
        headline["scale"] = {
            "process": {"services": scale("process", "services"),
                        "start_s": scale("process", "start", "seconds"),
                        "ready_status": scale("process", "start", "ready_status"),
                        "soft_nofile_at_spawn": scale("process", "nofile_limit", "soft_at_spawn"),
                        "host_descriptors_per_service": scale("process", "host_descriptors", "per_service"),
                        "pss_kib_per_service": scale("process", "memory", "pss_kib_per_service"),
                        "processes": scale("process", "memory", "processes"),
                        "threads": scale("process", "memory", "threads"),
                        "met": scale("process", "met"), "error": scale("process", "error")},
            "thread": {"services": scale("thread", "services"),
                       "start_s": scale("thread", "start", "seconds"),
                       "ready_status": scale("thread", "start", "ready_status"),
                       "started": scale("thread", "start", "started"),
                       "failed": scale("thread", "start", "failed"),
                       "host_memory_beyond_plugins_kib_per_service":
                           scale("thread", "host_memory", "beyond_plugins_kib_per_running_service"),
                       "host_mappings_per_service": scale("thread", "host_mappings", "per_running_service"),
                       "host_cpu_percent_of_one_core": scale("thread", "host_cpu", "percent_of_one_core"),
                       "bare_threads_cpu_percent_of_one_core":
                           scale("thread", "bare_threads", "cpu", "percent_of_one_core"),
                       "idle_cpu_times_bare_threads": scale("thread", "idle_cpu_times_bare_threads"),
                       "met": scale("thread", "met"), "error": scale("thread", "error")}}
    return headline


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=300, help="idle services (default 300)")
    parser.add_argument("--window", type=float,
                        help="measurement window in seconds (default 10 for idle CPU, 5 for the crash loop)")
    parser.add_argument("--servicehost", default=os.environ.get("SERVICEHOST_EXECUTABLE")
                        or str(ROOT / ".build" / "release" / "servicehost"),
                        help="the servicehost executable (default $SERVICEHOST_EXECUTABLE, else .build/release/servicehost)")
    parser.add_argument("--only", choices=(*COLUMNS, "scale"),
                        help="measure one column only, or only the scale workload (for development)")
    parser.add_argument("--scale-process", type=int, default=1000, metavar="N",
                        help="process-isolated services of the scale workload (default 1000; 0: none)")
    parser.add_argument("--scale-thread", type=int, default=10000, metavar="N",
                        help="thread-isolated services of the scale workload (default 10000; 0: none)")
    args = parser.parse_args()
    if args.services < 1 or (args.window is not None and args.window <= 0):
        parser.error("--services and --window must be positive")
    if args.scale_process < 0 or args.scale_thread < 0:
        parser.error("--scale-process and --scale-thread cannot be negative")
    args.idle_window = args.window or 10.0
    args.crash_window = args.window or 5.0
    args.servicehost = os.path.abspath(args.servicehost)
    columns = [args.only] if args.only else [*COLUMNS, "scale"]
    if {"process", "thread", "scale"} & set(columns) and not os.access(args.servicehost, os.X_OK):
        parser.error(f"no servicehost executable at {args.servicehost}")
    return args, columns


def run(args, columns, scratch):
    build = scratch / "build"
    build.mkdir()
    progress("compiling the fixtures")
    compile_fixtures(build)
    document = {"machine": machine(), "loadavg_before": loadavg(),
                "parameters": {"services": args.services, "crash_window_s": args.crash_window,
                               "idle_window_s": args.idle_window, "settle_s": SETTLE_S,
                               "supervisord_rpc_poll_interval_ms": RPC_POLL_S * 1000, "log_level": "error",
                               "servicehost_runtime_directory": {
                                   "parent": str(RUNTIME_PARENT) if RUNTIME_PARENT else "TMPDIR (the scratch directory)",
                                   "tmpfs": RUNTIME_PARENT is not None,
                                   "why": ("ServiceHost's staged plugin copies go to $XDG_RUNTIME_DIR, a tmpfs under "
                                           "the shipped systemd unit (/run/servicehost); given one here on /dev/shm")}}}
    if "scale" in columns:
        document["parameters"].update({"scale_process_services": args.scale_process,
                                       "scale_thread_services": args.scale_thread,
                                       "scale_soft_nofile": SCALE_SOFT_NOFILE,
                                       "scale_start_deadline_s": SCALE_DEADLINE_S})
    runners = {"crash_loop": {}, "idle": {}}
    if "supervisord" in columns:
        version, why_not = ensure_supervisor()
        document["supervisord"] = {"version": version} if version else {"skipped": why_not}
        if version:
            runners["crash_loop"]["supervisord"] = lambda work: supervisord_crash(args, build, work)
            runners["idle"]["supervisord"] = lambda work: supervisord_idle(args, build, work)
        else:
            progress(f"supervisord skipped: {why_not}")
    if {"process", "thread", "scale"} & set(columns):
        document["servicehost"] = {"executable": args.servicehost,
                                   "version": servicehost_version(args.servicehost)}
    for isolation in ("process", "thread"):
        if isolation in columns:
            runners["crash_loop"][f"servicehost_{isolation}"] = (
                lambda work, isolation=isolation: servicehost_crash(args, build, work, isolation))
            runners["idle"][f"servicehost_{isolation}"] = (
                lambda work, isolation=isolation: servicehost_idle(args, build, work, isolation))
    if "scale" in columns:
        runners["scale"] = {}
        if args.scale_process:
            runners["scale"]["process"] = lambda work: scale_process(args, build, work)
        if args.scale_thread:
            runners["scale"]["thread"] = lambda work: scale_thread(args, build, work)
    for workload, columns_of in runners.items():
        document[workload] = {column: measure(f"{workload} {column}", scratch, function)
                              for column, function in columns_of.items()}
    document["loadavg_after"] = loadavg()
    document["summary"] = summary(document)
    return document


def main():
    args, columns = parse_arguments()
    # SIGTERM unwinds like Ctrl-C, so every supervisor tree is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    global RUNTIME_PARENT
    RUNTIME_PARENT = tmpfs_runtime_parent()
    try:
        with tempfile.TemporaryDirectory(prefix="side-by-side-") as scratch:
            document = run(args, columns, Path(scratch))
    finally:
        if RUNTIME_PARENT is not None:
            shutil.rmtree(RUNTIME_PARENT, ignore_errors=True)
    print(json.dumps(document, indent=2))
    failed = [f"{workload} {column}" for workload in ("crash_loop", "idle", "scale")
              for column, result in document.get(workload, {}).items() if "error" in result]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
