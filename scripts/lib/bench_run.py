#!/usr/bin/env python3
"""scripts/lib/bench_run.py - the measuring half of scripts/bench.

Starts luamta (with examples/bench.lua and without a script) and Postfix's
smtp-sink, drives them with Postfix's smtp-source in interleaved rounds, and
prints a table plus one "BENCH key=value ..." line per figure. scripts/bench
installs and builds first and then runs this; run it directly only with
--bin.

Subcommand "hold HOST PORT N" is the idle-connection client of the memory
figure: it opens N sessions (greeting, EHLO), prints "HELD N" and keeps them
until its standard input closes.
"""
import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
HELO = "bench.test"
SENDER = "sender@bench.test"
RCPT = "rcpt@bench.test"
# The message of the latency client: about the size of smtp-source's default.
LAT_MESSAGE = (
    "From: <sender@bench.test>\r\nTo: <rcpt@bench.test>\r\n"
    "Subject: latency\r\nMessage-Id: <latency@bench.test>\r\n\r\n"
    "La de da de da 1.\r\nLa de da de da 2.\r\nLa de da de da 3.\r\n"
    "La de da de da 4.\r\n"
)

# (name, what, smtp-source sessions, messages per invocation, extra flags,
#  invocations per run). A run of "per_conn100" is several invocations of
# 16 sessions x 100 messages, so each connection carries about 100 messages.
FULL_SCENARIOS = [
    ("conc1", "1 msg/conn, concurrency 1", 1, 1500, [], 1),
    ("conc16", "1 msg/conn, concurrency 16", 16, 8000, [], 1),
    ("conc128", "1 msg/conn, concurrency 128", 128, 8000, [], 1),
    ("per_conn100", "100 msgs/conn, concurrency 16", 16, 1600, ["-d"], 10),
    ("size100k", "100 KiB msgs, concurrency 16", 16, 2000, ["-l", "102400"], 1),
]
SMOKE_SCENARIOS = [
    ("conc1", "1 msg/conn, concurrency 1", 1, 20, [], 1),
    ("conc16", "1 msg/conn, concurrency 16", 16, 48, [], 1),
    ("conc128", "1 msg/conn, concurrency 128", 128, 128, [], 1),
    ("per_conn100", "100 msgs/conn, concurrency 16", 2, 200, ["-d"], 1),
    ("size100k", "100 KiB msgs, concurrency 16", 16, 16, ["-l", "102400"], 1),
]
FULL_MEMORY = [1000, 10000]
SMOKE_MEMORY = [100]
FULL_LATENCY = 500
SMOKE_LATENCY = 20

CLK_TCK = os.sysconf("SC_CLK_TCK")


def die(msg):
    print("bench: " + msg, file=sys.stderr)
    sys.exit(1)


def process_tree(root):
    """root and all its descendants (a luamta master and its workers)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    pids, todo = [], [root]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children.get(p, []))
    return pids


def cpu_ns_one(pid):
    """CPU time (user + system) of every thread of pid, in nanoseconds.

    /proc/PID/task/*/schedstat is the scheduler's exact run time; /proc/PID/stat
    (utime + stime) is sampled at the clock tick (10 ms) and is the fallback."""
    try:
        total = 0
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        return total
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
    except (OSError, ValueError, IndexError):
        return 0  # exited between the listing and the read


def cpu_ns(root):
    """CPU time of the server: its process and every descendant."""
    return sum(cpu_ns_one(p) for p in process_tree(root))


def rss_kib_one(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(root):
    """VmRSS of the server's processes, added up (pages shared between a
    master and its workers count twice, in "before" and "after" alike)."""
    return sum(rss_kib_one(p) for p in process_tree(root))


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


class Server:
    """A server under test: label, pid, port; start() and stop()."""

    kind = "?"
    script = "none"

    def key(self):
        return "%s/%s" % (self.kind, self.script)

    def accepted(self):
        return None  # unknown

    def check_alive(self):
        if self.proc.poll() is not None:
            die("%s exited during the bench (status %s)%s" % (
                self.key(), self.proc.returncode, self.log_tail()))

    def log_tail(self):
        return ""


class Luamta(Server):
    kind = "luamta"

    def __init__(self, binary, script, workdir, log_level, name, extra=()):
        self.binary = binary
        self.extra = list(extra)
        self.script = os.path.basename(script) if script else "none"
        self.script_path = script
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, "log")
        self.log_level = log_level
        self.log_offset = 0
        self.accept_count = 0

    def start(self):
        ready = os.path.join(self.dir, "ready")
        args = [self.binary, "--listen", "%s:0" % HOST, "--ready-file", ready,
                "--hostname", "luamta.bench.test", "--max-connections", "20000",
                "--log-level", self.log_level] + self.extra
        if self.script_path:
            args += ["--script", self.script_path]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die("luamta did not start (status %s)%s" % (self.proc.returncode,
                                                             self.log_tail()))
            try:
                with open(ready) as f:
                    line = f.readline().split()
                if len(line) == 2:
                    self.port = int(line[1])
                    self.pid = self.proc.pid
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        die("luamta wrote no ready file in 20 s" + self.log_tail())

    def accepted(self):
        """Messages accepted so far, from the smtp.message lines of the log
        (only at --log-level info or debug)."""
        if self.log_level not in ("info", "debug"):
            return None
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].split(b"\n"):
            if b" smtp.message " in line and b"result=accept" in line:
                self.accept_count += 1
        self.log_offset += end
        return self.accept_count

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n--- last lines of %s:\n%s" % (self.log_path, "\n".join(lines[-n:]))

    def stop(self):
        """SIGTERM, wait; returns the exit status (0 is a clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return "hung"
        self.log.close()
        return self.proc.returncode


class Sink(Server):
    kind = "smtp-sink"

    def __init__(self, sink_bin, workdir):
        self.sink_bin = sink_bin
        self.log_path = os.path.join(workdir, "smtp-sink.log")

    def start(self):
        for _ in range(5):
            self.port = free_port()
            # -m: concurrent connections (default 256); 1024: listen backlog.
            args = [self.sink_bin, "-m", "20000", "-h", "sink.bench.test"]
            if os.geteuid() == 0:
                args += ["-u", "nobody"]  # smtp-sink refuses to run as root
            args += ["%s:%d" % (HOST, self.port), "1024"]
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log)
            if wait_port(self.port, self.proc):
                self.pid = self.proc.pid
                return
            self.proc.kill()
            self.proc.wait()
            self.log.close()
        die("smtp-sink did not start" + self.log_tail())

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return "\n--- smtp-sink output:\n" + f.read().decode(
                    "utf-8", "replace")[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return 0


def label(server):
    if server.kind == "luamta":
        return "luamta+lua" if server.script != "none" else "luamta"
    return server.kind


def variant(server):
    if server.kind == "luamta":
        return "lua" if server.script != "none" else "bare"
    return "sink"


# ------------------------------------------------------ TLS and reloads

def tls_bench(args, work, secs):
    """Handshakes per second against an implicit-TLS listener, measured
    with `openssl s_time -new` (a full handshake per connection), and the
    server's CPU time per handshake. Certificates are made here."""
    d = os.path.join(work, "tls")
    os.makedirs(d, exist_ok=True)
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=luamta.bench.test"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = Luamta(args.bin, None, work, "warn", "tls",
                 args.luamta_arg + ["--tls-cert", crt, "--tls-key", key,
                                    "--listen-tls", "%s:0" % HOST])
    srv.start()
    try:
        # The ready file lists the plain listener first, the TLS one second.
        with open(os.path.join(srv.dir, "ready")) as f:
            port = int(f.read().split("\n")[1].split()[1])
        cpu0 = cpu_ns(srv.pid)
        r = subprocess.run(["openssl", "s_time", "-connect", "%s:%d" % (HOST, port), "-new",
                            "-time", str(secs)], capture_output=True, text=True)
        cpu1 = cpu_ns(srv.pid)
    finally:
        status = srv.stop()
    check_exit(srv, status)
    # "N connections in T real seconds" (the other line counts the
    # client's user CPU seconds, not wall time).
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", r.stdout)
    if not m:
        die("openssl s_time printed no figure: " + (r.stdout + r.stderr)[-500:])
    n, real = int(m.group(1)), float(m.group(2))
    return {"handshakes": n, "per_sec": n / real if real > 0 else 0.0,
            "cpu_us": (cpu1 - cpu0) / 1e3 / n if n else 0.0}


def reload_bench(args, script, work, sessions, messages, rounds):
    """conc16 with examples/bench.lua while the policy is reloaded every
    100 ms (SIGHUP to the master), against the same run without reloads:
    a reload must not cost sessions or drop messages."""
    res = {}
    for mode in ("steady", "reload"):
        srv = Luamta(args.bin, script, work, "info", "reload-" + mode, args.luamta_arg)
        srv.start()
        runs = []
        try:
            for _ in range(rounds):
                stop = threading.Event()
                hups = [0]

                def hupper():
                    while not stop.wait(0.1):
                        os.kill(srv.pid, signal.SIGHUP)
                        hups[0] += 1
                t = threading.Thread(target=hupper)
                if mode == "reload":
                    t.start()
                run = run_load(args.source, srv, sessions, messages, [], 1)
                stop.set()
                if mode == "reload":
                    t.join()
                run["hups"] = hups[0]
                runs.append(run)
        finally:
            status = srv.stop()
        check_exit(srv, status)
        res[mode] = runs
    return res


def dnsbl_bench(args, work, sessions, messages, rounds):
    """conc16 with examples/bench-dnsbl.lua (bench.lua plus one DNSBL
    lookup per connection) against bench.lua alone, interleaved. The
    resolver is a local dnsmasq, the usual set-up on a mail server; it
    answers NXDOMAIN without a SOA, so luamta caches nothing and every
    connection makes a real query. Its own CPU is not counted (it is
    another process, as a local resolver would be)."""
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.access(dnsmasq, os.X_OK):
        die("dnsmasq not found: install the Debian package dnsmasq-base")
    port = free_port()
    dargs = [dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts",
             "--conf-file=/dev/null", "--port=%d" % port, "--listen-address=" + HOST,
             "--bind-interfaces", "--pid-file=", "--local=/bl.bench.test/"]
    if os.geteuid() == 0:
        dargs.append("--user=root")
    dlog = open(os.path.join(work, "dnsmasq.log"), "ab")
    dproc = subprocess.Popen(dargs, stdin=subprocess.DEVNULL, stdout=dlog, stderr=dlog)
    time.sleep(0.3)
    if dproc.poll() is not None:
        die("dnsmasq did not start (see %s)" % os.path.join(work, "dnsmasq.log"))
    extra = args.luamta_arg + ["--resolver", "%s:%d" % (HOST, port)]
    plain = os.path.join(args.top, "examples", "bench.lua")
    dnsbl = os.path.join(args.top, "examples", "bench-dnsbl.lua")
    servers = [Luamta(args.bin, plain, work, "info", "dnsbl-without", extra),
               Luamta(args.bin, dnsbl, work, "info", "dnsbl-with", extra)]
    res = {"without": [], "with": []}
    try:
        for srv in servers:
            srv.start()
        for srv in servers:  # warm-up
            run_load(args.source, srv, sessions, sessions * 4, [], 1)
        for rnd in range(rounds):
            order = servers if rnd % 2 == 0 else list(reversed(servers))
            for srv in order:
                key = "with" if srv.script == "bench-dnsbl.lua" else "without"
                res[key].append(run_load(args.source, srv, sessions, messages, [], 1))
    finally:
        statuses = [(srv, srv.stop()) for srv in servers]
        dproc.terminate()
        dproc.wait()
        dlog.close()
    for srv, st in statuses:
        check_exit(srv, st)
    # A lookup that failed is logged by the policy: count them as errors.
    with open(servers[1].log_path, "rb") as f:
        res["dns_errors"] = f.read().count(b"dnsbl: ")
    return res


class PostfixRelay(Server):
    """A private Postfix instance (postfix -c DIR: its own configuration,
    queue and log; no chroot, no syslog) that relays every message to
    relayhost, with Postfix's own defaults for the queue (fsync'ed)."""
    kind = "postfix"
    script = "relayhost"

    def __init__(self, workdir, relayhost):
        self.dir = os.path.join(workdir, "postfix")
        self.relayhost = relayhost
        self.log_path = os.path.join(self.dir, "maillog")

    def start(self):
        conf = os.path.join(self.dir, "conf")
        for d in (conf, os.path.join(self.dir, "queue"), os.path.join(self.dir, "data")):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)  # the postfix user reaches its directories
        self.port = free_port()
        main = [
            "compatibility_level = 3.6",
            "queue_directory = %s/queue" % self.dir,
            "data_directory = %s/data" % self.dir,
            "mail_owner = postfix",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "myhostname = postfix.bench.test",
            "mydestination =",
            "mynetworks = 127.0.0.0/8",
            "relayhost = %s" % self.relayhost,
            "alias_maps =",
            "alias_database =",
            "maillog_file = %s" % self.log_path,
            "maillog_file_prefixes = %s" % self.dir,
            "default_destination_concurrency_limit = 20",
        ]
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write("\n".join(main) + "\n")
        lines = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                line = line.rstrip("\n")
                if re.match(r"^smtp\s+inet\s", line):
                    line = "%s:%d inet n - n - - smtpd" % (HOST, self.port)
                elif re.match(r"^[^#\s]", line):
                    line = re.sub(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)y(\s)", r"\1n\2", line)
                lines.append(line)
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.conf = conf
        for cmd in ("set-permissions", "start"):
            r = subprocess.run(["/usr/sbin/postfix", "-c", conf, cmd],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if r.returncode != 0:
                die("postfix %s failed: %s%s" % (cmd, r.stderr.decode(errors="replace"),
                                                 self.log_tail()))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    die("postfix did not listen" + self.log_tail())
                time.sleep(0.05)
        with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
            self.pid = int(f.read().split()[0])

    def check_alive(self):
        try:
            os.kill(self.pid, 0)
        except OSError:
            die("postfix's master exited during the bench" + self.log_tail())

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n--- last lines of %s:\n%s" % (self.log_path, "\n".join(lines[-n:]))

    def stop(self):
        subprocess.run(["/usr/sbin/postfix", "-c", self.conf, "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return 0


# A relayed message's completion in each server's log, with its delay
# (seconds from the 250 to the next hop's 250).
RELAY_DONE = {
    "luamta": re.compile(r" relay\.done id=\S+ delay=([0-9.]+)"),
    "postfix": re.compile(r" delay=([0-9.]+), delays=\S+, dsn=2\S*, status=sent"),
}


def relay_delays(server, offset):
    with open(server.log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return [float(m) for m in RELAY_DONE[server.kind].findall(text)]


def relay_bench(args, work, sessions, messages, rounds):
    """conc16, every message accepted, queued (fsync'ed) and relayed to
    smtp-sink: luamta with examples/bench-relay.lua (a host route), and a
    private Postfix with relayhost, in alternating rounds. Reports the
    accepting rate, the end-to-end rate (until the last delivery in the
    log), the server's CPU per message with the relaying included, and the
    delay from the 250 to the next hop's 250 at p50 and p99."""
    sink = Sink(args.sink, work)
    sink.start()
    os.environ["BENCH_RELAY"] = "%s:%d" % (HOST, sink.port)
    spool = os.path.join(work, "relay-spool")
    servers = [Luamta(args.bin, os.path.join(args.top, "examples", "bench-relay.lua"), work,
                      "info", "relay", args.luamta_arg + ["--spool", spool])]
    if os.path.exists("/usr/sbin/postfix") and os.geteuid() == 0:
        servers.append(PostfixRelay(work, "[%s]:%d" % (HOST, sink.port)))
    else:
        progress("relay: no Postfix to compare with (needs /usr/sbin/postfix and root)")
    res = {s.kind: [] for s in servers}
    try:
        for srv in servers:
            srv.start()
        # The first round warms up. The order alternates (A B, B A, A B,
        # B A, A B): over an even number of measured rounds each server
        # runs twice right after itself and twice right after the other.
        # That matters here: on this VM a round right after the other
        # server's has cost luamta up to twice the CPU of one after its own.
        for rnd in range(rounds + 1):
            order = servers if rnd % 2 == 0 else list(reversed(servers))
            for srv in order:
                with open(srv.log_path, "rb") as f:
                    offset = len(f.read())
                cpu0 = cpu_ns(srv.pid)
                t0 = time.perf_counter()
                run = run_load(args.source, srv, sessions, messages, [], 1)
                accept_secs = time.perf_counter() - t0
                delays = []
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    delays = relay_delays(srv, offset)
                    if len(delays) >= messages:
                        break
                    time.sleep(0.05)
                secs = time.perf_counter() - t0
                run.update({"accept_secs": accept_secs, "secs": secs,
                            "cpu_ns": cpu_ns(srv.pid) - cpu0, "done": len(delays),
                            "delays": sorted(delays)})
                if rnd > 0:
                    res[srv.kind].append(run)
    finally:
        statuses = [(srv, srv.stop()) for srv in servers]
        sink.stop()
    for srv, st in statuses:
        if srv.kind == "luamta":
            check_exit(srv, st)
    return res


def pct(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def report_relay(res):
    if not res:
        return
    w = sys.stdout.write
    w("\n== relay: accept, queue (fsync) and relay to smtp-sink (conc16)\n")
    w("%-8s %8s %8s %10s %10s %11s %8s %8s %6s\n" % (
        "server", "msgs", "relayed", "accept/s", "relayed/s", "cpu_us/msg", "p50_ms", "p99_ms",
        "errors"))
    lines = []
    for kind, runs in res.items():
        if not runs:
            continue
        msgs = sum(r["msgs"] for r in runs)
        done = sum(r["done"] for r in runs)
        accept = statistics.median(r["msgs"] / r["accept_secs"] for r in runs)
        e2e = statistics.median(r["done"] / r["secs"] for r in runs)
        cpu = statistics.median(r["cpu_ns"] / r["msgs"] / 1000.0 for r in runs)
        delays = sorted(d for r in runs for d in r["delays"])
        errors = sum(r["errors"] for r in runs)
        p50, p99 = pct(delays, 0.5) * 1000, pct(delays, 0.99) * 1000
        w("%-8s %8d %8d %10.0f %10.0f %11.1f %8.1f %8.1f %6d\n" % (
            kind, msgs, done, accept, e2e, cpu, p50, p99, errors))
        lines.append("BENCH name=relay_%s msgs=%d relayed=%d accept_per_sec=%.0f "
                     "relayed_per_sec=%.0f cpu_us_per_msg=%.2f delay_p50_ms=%.1f "
                     "delay_p99_ms=%.1f errors=%d" % (kind, msgs, done, accept, e2e, cpu, p50,
                                                      p99, errors))
    w("\n" + "\n".join(lines) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- throughput

def run_load(source_bin, server, sessions, messages, flags, invocations):
    """One timed run; returns dict(msgs, secs, cpu_ns, errors, lost)."""
    server.check_alive()
    before_acc = server.accepted()
    cpu0 = cpu_ns(server.pid)
    errors = 0
    detail = ""
    t0 = time.perf_counter()
    for _ in range(invocations):
        r = subprocess.run(
            [source_bin, "-M", HELO, "-f", SENDER, "-t", RCPT, "-s", str(sessions),
             "-m", str(messages)] + flags + ["%s:%d" % (HOST, server.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        if r.returncode != 0 or r.stderr.strip():
            errors += max(1, len(r.stderr.strip().splitlines()))
            detail = r.stderr.decode("utf-8", "replace").strip()
    secs = time.perf_counter() - t0
    sent = messages * invocations
    # The server may still be closing the last sessions: let it settle so
    # their CPU time counts in this run, not the next.
    lost = None
    if before_acc is not None:
        deadline = time.monotonic() + 5
        while True:
            got = server.accepted() - before_acc
            if got >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        lost = sent - got
    time.sleep(0.05)
    cpu1 = cpu_ns(server.pid)
    server.check_alive()
    if errors:
        print("bench: smtp-source reported errors against %s: %s" % (
            label(server), detail[-500:]), file=sys.stderr)
    return {"msgs": sent, "secs": secs, "cpu_ns": cpu1 - cpu0, "errors": errors,
            "lost": lost}


def throughput(args, servers, scenarios, rounds, out):
    results = {}  # (scenario, variant) -> list of runs
    for name, what, sessions, messages, flags, invocations in scenarios:
        # Warm-up: page in code and the allocator's arenas; not counted.
        for srv in servers:
            run_load(args.source, srv, sessions, max(sessions, messages // 20),
                     flags, 1)
        for rnd in range(rounds):
            # A B C, then C B A, ...: drift and position hit every server alike.
            order = servers if rnd % 2 == 0 else list(reversed(servers))
            for srv in order:
                run = run_load(args.source, srv, sessions, messages, flags,
                               invocations)
                results.setdefault((name, variant(srv)), []).append(run)
        progress("%s done" % name)
    return results


def summarize(runs):
    rates = [r["msgs"] / r["secs"] for r in runs]
    cpus = [r["cpu_ns"] / r["msgs"] / 1000.0 for r in runs]
    lost = None if any(r["lost"] is None for r in runs) else sum(r["lost"] for r in runs)
    return {
        "msgs": sum(r["msgs"] for r in runs),
        "rate": statistics.median(rates),
        "rate_min": min(rates), "rate_max": max(rates),
        "cpu": statistics.median(cpus),
        "errors": sum(r["errors"] for r in runs),
        "lost": lost,
    }


# -------------------------------------------------------------------- memory

def hold_main(argv):
    """Subcommand: hold HOST PORT N."""
    host, port, n = argv[0], int(argv[1]), int(argv[2])
    socks = []
    for i in range(n):
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        read_reply(f, b"220")
        s.sendall(b"EHLO hold.bench.test\r\n")
        read_reply(f, b"250")
        socks.append((s, f))
    print("HELD %d" % len(socks), flush=True)
    sys.stdin.read()
    for s, f in socks:
        f.close()
        s.close()
    return 0


def read_reply(f, want):
    """Reads one (possibly multi-line) reply; fails unless it starts with want."""
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("connection closed while waiting for %s" % want)
        if len(line) < 4 or line[3:4] != b"-":
            break
    if not line.startswith(want):
        raise ConnectionError("expected %s, got %r" % (want, line))
    return line


def memory(args, make_servers, counts, out):
    """RSS per idle connection: a fresh server per count and per server kind."""
    results = []
    limit = os_fd_limit()
    for n in counts:
        if n + 64 > limit:
            print("bench: skipping %d idle connections: fd limit is %d (raise ulimit -n)"
                  % (n, limit), file=sys.stderr)
            continue
        for srv in make_servers("mem%d" % n):
            srv.start()
            try:
                time.sleep(0.1)
                before = rss_kib(srv.pid)
                holder = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "hold", HOST,
                     str(srv.port), str(n)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                line = holder.stdout.readline().decode().strip()
                if line != "HELD %d" % n:
                    holder.kill()
                    holder.wait()
                    die("the idle-connection client failed against %s (%r)%s" % (
                        label(srv), line, srv.log_tail()))
                time.sleep(0.2)
                after = rss_kib(srv.pid)
                srv.check_alive()
                holder.stdin.close()
                holder.wait(timeout=60)
                results.append({"server": srv, "conns": n, "before": before,
                                "after": after, "per_conn": (after - before) / n})
            finally:
                status = srv.stop()
                check_exit(srv, status)
        progress("memory %d done" % n)
    return results


def os_fd_limit():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ------------------------------------------------------------------- latency

def one_session(port):
    """One whole session, non-pipelined as smtp-source talks; returns ns."""
    t0 = time.perf_counter_ns()
    s = socket.create_connection((HOST, port), timeout=30)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        read_reply(f, b"220")
        for cmd, want in ((b"EHLO " + HELO.encode(), b"250"),
                          (b"MAIL FROM:<" + SENDER.encode() + b">", b"250"),
                          (b"RCPT TO:<" + RCPT.encode() + b">", b"250"),
                          (b"DATA", b"354")):
            s.sendall(cmd + b"\r\n")
            read_reply(f, want)
        s.sendall(LAT_MESSAGE.encode() + b".\r\n")
        read_reply(f, b"250")
        s.sendall(b"QUIT\r\n")
        read_reply(f, b"221")
        t1 = time.perf_counter_ns()
        f.close()
    finally:
        s.close()
    return t1 - t0


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    k = max(0, min(len(sorted_values) - 1, int(-(-p * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def latency(servers, sessions):
    samples = {variant(s): [] for s in servers}
    chunks = 10 if sessions >= 100 else 2
    per = max(1, sessions // chunks)
    for srv in servers:  # warm-up
        for _ in range(min(20, per)):
            one_session(srv.port)
    for c in range(chunks):
        order = servers if c % 2 == 0 else list(reversed(servers))
        for srv in order:
            srv.check_alive()
            for _ in range(per):
                samples[variant(srv)].append(one_session(srv.port))
    out = {}
    for v, xs in samples.items():
        xs.sort()
        out[v] = {"n": len(xs), "p50": percentile(xs, 50) / 1000.0,
                  "p99": percentile(xs, 99) / 1000.0}
    progress("latency done")
    return out


# -------------------------------------------------------------------- output

def progress(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def fmt(x, digits=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return "%.*f" % (digits, x)
    return str(x)


def log_levels(path):
    """Counts of error and warn lines in a luamta log."""
    errors = warns = 0
    try:
        with open(path, "rb") as f:
            for line in f:
                level = line.split(b" ", 2)[1:2]
                if level == [b"error"]:
                    errors += 1
                elif level == [b"warn"]:
                    warns += 1
    except OSError:
        pass
    return errors, warns


def check_exit(srv, status):
    if srv.kind == "luamta":
        errors, warns = log_levels(srv.log_path)
        print("BENCH name=server_exit server=luamta script=%s status=%s "
              "log_errors=%d log_warnings=%d" % (srv.script, status, errors, warns))
        if status != 0:
            die("luamta (%s) exited with status %s on SIGTERM%s" % (
                srv.script, status, srv.log_tail()))


def git_commit(top):
    try:
        rev = subprocess.run(["git", "-C", top, "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", top, "status",
                                "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return (rev or "unknown") + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "hold":
        return hold_main(sys.argv[2:])
    ap = argparse.ArgumentParser(prog="scripts/bench")
    ap.add_argument("--bin", required=True, help="luamta binary")
    ap.add_argument("--smoke", action="store_true", help="tiny run, seconds")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved rounds per scenario (default 5, smoke 1)")
    ap.add_argument("--only", default="",
                    help="comma list of parts: conc1,conc16,conc128,per_conn100,"
                         "size100k,memory,latency,tls,reload,dnsbl,relay")
    ap.add_argument("--log-level", default=None,
                    help="luamta --log-level during the runs (default info: "
                         "its smtp.message lines prove no message was lost)")
    ap.add_argument("--luamta-arg", action="append", default=[], metavar="ARG",
                    help="extra luamta argument, repeatable (e.g. --luamta-arg=--workers=1)")
    ap.add_argument("--source", default=shutil.which("smtp-source") or "/usr/sbin/smtp-source")
    ap.add_argument("--sink", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    ap.add_argument("--top", default=os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    for tool in (args.source, args.sink):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            die("%s not found: install the Debian package postfix "
                "(scripts/bench does, see scripts/lib/bench_deps.sh)" % tool)
    if not os.access(args.bin, os.X_OK):
        die("no luamta binary at %s" % args.bin)
    args.bin = os.path.abspath(args.bin)
    # One serving process, like smtp-sink, unless asked otherwise: on 2
    # cores shared with smtp-source, a second worker costs more CPU per
    # message than it adds (see the README's bench section).
    if not any(a.startswith("--workers") or a == "--foreground" for a in args.luamta_arg):
        args.luamta_arg.insert(0, "--workers=1")
    script = os.path.join(args.top, "examples", "bench.lua")
    scenarios = SMOKE_SCENARIOS if args.smoke else FULL_SCENARIOS
    mem_counts = SMOKE_MEMORY if args.smoke else FULL_MEMORY
    lat_sessions = SMOKE_LATENCY if args.smoke else FULL_LATENCY
    rounds = args.rounds or (1 if args.smoke else 5)
    log_level = args.log_level or "info"
    only = set(filter(None, args.only.split(",")))
    if only:
        scenarios = [s for s in scenarios if s[0] in only]

    work = tempfile.mkdtemp(prefix="luamta-bench.")
    os.chmod(work, 0o755)  # smtp-sink drops to nobody
    started = time.time()

    def make_servers(tag):
        return [Luamta(args.bin, script, work, log_level, tag + "-lua", args.luamta_arg),
                Luamta(args.bin, None, work, log_level, tag + "-bare", args.luamta_arg),
                Sink(args.sink, work)]

    print("BENCH name=meta commit=%s cpus=%d kernel=%s mode=%s rounds=%d log_level=%s "
          "script=examples/bench.lua luamta_args=%s" % (
              git_commit(args.top), os.cpu_count(), platform.release(),
              "smoke" if args.smoke else "full", rounds, log_level,
              ",".join(args.luamta_arg) or "-"))
    sys.stdout.flush()

    tput = lat = None
    mem = []
    servers = make_servers("load")
    try:
        for s in servers:
            s.start()
        if scenarios:
            tput = throughput(args, servers, scenarios, rounds, sys.stdout)
        if not only or "latency" in only:
            lat = latency(servers, lat_sessions)
    finally:
        statuses = [(s, s.stop()) for s in servers]
    for s, st in statuses:
        check_exit(s, st)
    if not only or "memory" in only:
        mem = memory(args, make_servers, mem_counts, sys.stdout)
    tls = rel = None
    if not only or "tls" in only:
        tls = tls_bench(args, work, 2 if args.smoke else 10)
        progress("tls done")
    if not only or "reload" in only:
        rel = reload_bench(args, script, work, 16, 200 if args.smoke else 8000,
                           1 if args.smoke else 3)
        progress("reload done")

    dnsbl = None
    if not only or "dnsbl" in only:
        dnsbl = dnsbl_bench(args, work, 16, 200 if args.smoke else 8000,
                            1 if args.smoke else 3)
        progress("dnsbl done")

    relay = None
    if not only or "relay" in only:
        relay = relay_bench(args, work, 16, 100 if args.smoke else 4000, 1 if args.smoke else 4)
        progress("relay done")

    report(scenarios, tput, lat, mem, lat_sessions)
    report_extra(tls, rel)
    report_dnsbl(dnsbl)
    report_relay(relay)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        progress("work directory kept: " + work)
    progress("finished in %.0f s" % (time.time() - started))

    bad = []
    if tput:
        for (name, v), runs in tput.items():
            sm = summarize(runs)
            if sm["errors"]:
                bad.append("%s/%s: %d smtp-source errors" % (name, v, sm["errors"]))
            if sm["lost"]:
                bad.append("%s/%s: %d messages lost" % (name, v, sm["lost"]))
    if rel:
        for mode, runs in rel.items():
            sm = summarize(runs)
            if sm["errors"] or sm["lost"]:
                bad.append("reload/%s: %d errors, %s lost" % (mode, sm["errors"], sm["lost"]))
    if dnsbl:
        for mode in ("without", "with"):
            sm = summarize(dnsbl[mode])
            if sm["errors"] or sm["lost"]:
                bad.append("dnsbl/%s: %d errors, %s lost" % (mode, sm["errors"], sm["lost"]))
        if dnsbl["dns_errors"]:
            bad.append("dnsbl: %d lookups failed" % dnsbl["dns_errors"])
    if relay:
        for kind, runs in relay.items():
            for r in runs:
                if r["errors"] or r["done"] < r["msgs"]:
                    bad.append("relay/%s: %d errors, %d of %d relayed" % (
                        kind, r["errors"], r["done"], r["msgs"]))
    if bad:
        die("; ".join(bad))
    return 0


def report_dnsbl(dnsbl):
    if not dnsbl:
        return
    w = sys.stdout.write
    w("\n== one DNSBL lookup per connection (conc16; a local dnsmasq, nothing cached)\n")
    w("%-8s %-16s %8s %10s %11s %9s\n" % ("lookup", "script", "msgs", "msgs/s",
                                          "cpu_us/msg", "cpu_ratio"))
    base = summarize(dnsbl["without"])
    lines = []
    for mode, script in (("without", "bench.lua"), ("with", "bench-dnsbl.lua")):
        sm = summarize(dnsbl[mode])
        ratio = sm["cpu"] / base["cpu"] if base["cpu"] > 0 else 0.0
        w("%-8s %-16s %8d %10.0f %11.1f %9.2f\n" % (mode, script, sm["msgs"], sm["rate"],
                                                   sm["cpu"], ratio))
        lines.append("BENCH name=dnsbl_%s script=%s msgs=%d msgs_per_sec=%.0f "
                     "cpu_us_per_msg=%.2f cpu_ratio=%.3f errors=%d lost=%s" % (
                         mode, script, sm["msgs"], sm["rate"], sm["cpu"], ratio,
                         sm["errors"], fmt(sm["lost"])))
    w("\nBENCH name=dnsbl_lookups failed=%d\n" % dnsbl["dns_errors"])
    w("\n".join(lines) + "\n")
    sys.stdout.flush()


def report_extra(tls, rel):
    w = sys.stdout.write
    if tls:
        w("\n== TLS: full handshakes on an implicit-TLS listener (openssl s_time -new)\n")
        w("%-9s %10s %14s %16s\n" % ("server", "handshakes", "per_sec", "cpu_us_per_hs"))
        w("%-9s %10d %14.0f %16.1f\n" % ("luamta", tls["handshakes"], tls["per_sec"],
                                         tls["cpu_us"]))
        w("\nBENCH name=tls_handshake server=luamta handshakes=%d per_sec=%.0f "
          "cpu_us_per_handshake=%.1f\n" % (tls["handshakes"], tls["per_sec"], tls["cpu_us"]))
    if rel:
        w("\n== reload every 100 ms under load (conc16, bench.lua)\n")
        w("%-8s %8s %10s %11s %6s %6s %5s\n" % ("mode", "msgs", "msgs/s", "cpu_us/msg",
                                               "hups", "errors", "lost"))
        lines = []
        for mode in ("steady", "reload"):
            sm = summarize(rel[mode])
            hups = sum(r["hups"] for r in rel[mode])
            w("%-8s %8d %10.0f %11.1f %6d %6d %5s\n" % (mode, sm["msgs"], sm["rate"],
                                                       sm["cpu"], hups, sm["errors"],
                                                       fmt(sm["lost"])))
            lines.append("BENCH name=reload_%s msgs=%d msgs_per_sec=%.0f cpu_us_per_msg=%.2f "
                         "hups=%d errors=%d lost=%s" % (mode, sm["msgs"], sm["rate"], sm["cpu"],
                                                        hups, sm["errors"], fmt(sm["lost"])))
        w("\n" + "\n".join(lines) + "\n")
    sys.stdout.flush()


def report(scenarios, tput, lat, mem, lat_sessions):
    w = sys.stdout.write
    names = {"lua": ("luamta", "bench.lua"), "bare": ("luamta", "none"),
             "sink": ("smtp-sink", "none")}
    if tput:
        w("\n== throughput (median of rounds; ratio = luamta / smtp-sink)\n")
        w("%-12s %-9s %-10s %8s %10s %11s %10s %9s %6s %5s\n" % (
            "scenario", "server", "script", "msgs", "msgs/s", "cpu_us/msg",
            "rate_ratio", "cpu_ratio", "errors", "lost"))
        lines = []
        for name, what, *_ in scenarios:
            sink = summarize(tput[(name, "sink")])
            for v in ("lua", "bare", "sink"):
                sm = summarize(tput[(name, v)])
                server, script = names[v]
                rr = sm["rate"] / sink["rate"] if v != "sink" else None
                cr = sm["cpu"] / sink["cpu"] if v != "sink" and sink["cpu"] > 0 else None
                w("%-12s %-9s %-10s %8d %10.0f %11.1f %10s %9s %6d %5s\n" % (
                    name, server, script, sm["msgs"], sm["rate"], sm["cpu"],
                    fmt(rr, 2), fmt(cr, 2), sm["errors"], fmt(sm["lost"])))
                line = ("BENCH name=%s_%s scenario=%s server=%s script=%s msgs=%d "
                        "msgs_per_sec=%.0f msgs_per_sec_min=%.0f msgs_per_sec_max=%.0f "
                        "cpu_us_per_msg=%.2f errors=%d lost=%s" % (
                            name, v, name, server, script, sm["msgs"], sm["rate"],
                            sm["rate_min"], sm["rate_max"], sm["cpu"], sm["errors"],
                            fmt(sm["lost"])))
                if v != "sink":
                    line += " rate_ratio=%s cpu_ratio=%s" % (fmt(rr, 3), fmt(cr, 3))
                lines.append(line)
        w("\n" + "\n".join(lines) + "\n")
    if lat:
        w("\n== latency of a whole session (connect..221), concurrency 1, %d sessions\n"
          % lat_sessions)
        w("%-9s %-10s %6s %9s %9s %9s\n" % ("server", "script", "n", "p50_us", "p99_us",
                                           "p50_ratio"))
        lines = []
        for v in ("lua", "bare", "sink"):
            server, script = names[v]
            d = lat[v]
            ratio = d["p50"] / lat["sink"]["p50"] if v != "sink" else None
            w("%-9s %-10s %6d %9.0f %9.0f %9s\n" % (server, script, d["n"], d["p50"],
                                                    d["p99"], fmt(ratio, 2)))
            line = ("BENCH name=latency_%s server=%s script=%s sessions=%d p50_us=%.0f "
                    "p99_us=%.0f" % (v, server, script, d["n"], d["p50"], d["p99"]))
            if v != "sink":
                line += " p50_ratio=%.3f p99_ratio=%.3f" % (
                    ratio, d["p99"] / lat["sink"]["p99"])
            lines.append(line)
        w("\n" + "\n".join(lines) + "\n")
    if mem:
        w("\n== memory: RSS per idle connection after EHLO (fresh server each)\n")
        w("%-9s %-10s %6s %14s %13s %13s\n" % ("server", "script", "conns", "rss_before_kib",
                                            "rss_after_kib", "kib_per_conn"))
        lines = []
        for m in mem:
            srv = m["server"]
            server, script = names[variant(srv)]
            w("%-9s %-10s %6d %14d %13d %13.2f\n" % (server, script, m["conns"],
                                                   m["before"], m["after"],
                                                   m["per_conn"]))
            lines.append("BENCH name=mem_idle%d_%s server=%s script=%s conns=%d "
                         "rss_before_kib=%d rss_after_kib=%d kib_per_conn=%.2f" % (
                             m["conns"], variant(srv), server, script, m["conns"],
                             m["before"], m["after"], m["per_conn"]))
        w("\n" + "\n".join(lines) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
