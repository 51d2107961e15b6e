#!/usr/bin/env python3
"""scripts/lib/torture_run.py - the scenarios of scripts/torture.

Starts luamta (the binary given by --bin) on 127.0.0.1 with an ephemeral
port, drives it with asyncio clients (standard library only) and prints one
line per scenario:

  TORTURE scenario=NAME sessions=N messages=N failures=N lost=N ... result=PASS|FAIL

Detail lines start with two spaces. The exit status is 1 when a scenario
failed. Everything is bounded: each scenario has a deadline and each read a
timeout, so a hung server fails the scenario instead of hanging the run.
"""

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import torture_idle

HOST = "127.0.0.1"
ALL_SERVERS = []
REPLY_RE = re.compile(rb"^(\d{3})([ -])(.*)\r\n$", re.S)
MSGID_RE = re.compile(rb"^Message-ID: <([^>\r\n]+)>", re.M | re.I)
SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer")


def say(text=""):
    print(text, flush=True)


def detail(text):
    say("  " + text)


# ---------------------------------------------------------------- server --

class Server:
    """One luamta process (foreground or a master with workers)."""

    def __init__(self, opts, name, args, script=None, env=None):
        self.opts = opts
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=opts.tmp)
        self.log_path = os.path.join(self.dir, "server.log")
        self.ready = os.path.join(self.dir, "ready")
        cmd = [opts.bin, "--listen", HOST + ":0", "--ready-file", self.ready,
               "--hostname", "torture.test", "--log-level", opts.log_level]
        if script:
            cmd += ["--script", script]
        if opts.workers and "--workers" not in args and not name.startswith("durability"):
            args = args + ["--workers", str(opts.workers)]
        cmd += args
        if "--workers" not in args:
            cmd.append("--foreground")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.cmd = cmd
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=full_env)
        self.pid = self.proc.pid
        opts.servers.append(self)
        ALL_SERVERS.append(self)
        self.port = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s: luamta exited with %s before it was ready:\n%s"
                                   % (name, self.proc.returncode, self.log_tail()))
            try:
                with open(self.ready) as f:
                    line = f.readline().split()
                if len(line) == 2:
                    self.port = int(line[1])
                    break
            except OSError:
                pass
            time.sleep(0.02)
        if self.port is None:
            self.kill9()
            raise RuntimeError("%s: no ready file after 30 s" % name)
        # --ready-file is written after binding; with workers, give them a
        # moment to fork (they accept from the same sockets anyway).

    def alive(self):
        return self.proc.poll() is None

    def status(self, field="VmHWM", pid=None):
        """A /proc/PID/status figure in KiB, or None; with workers, the
        largest figure of any of them."""
        if pid is None and self.children():
            vals = [self.status(field, k) for k in self.children()]
            return max([v for v in vals if v is not None], default=None)
        try:
            with open("/proc/%d/status" % (pid or self.pid)) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu(self, pid=None):
        """User + system CPU seconds of the process (and its workers) so far."""
        if pid is None:
            return self.cpu(self.pid) + sum(self.cpu(k) for k in self.children())
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def children(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def kill9(self):
        """SIGKILL the server and its workers. The server stays in our
        process group, so `timeout -s KILL scripts/torture` takes it too."""
        if self.alive():
            for pid in [self.pid] + self.children():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait()

    def stop(self, timeout=30):
        """SIGTERM, wait; returns the exit status (-9 if it had to be killed)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return "hung"
        self.log.close()
        return self.proc.returncode

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, n=15, pattern=None):
        lines = self.log_text().splitlines()
        if pattern:
            rx = re.compile(pattern)
            lines = [l for l in lines if rx.search(l)]
        return "\n".join("    | " + l[:300] for l in lines[-n:])

    def sanitizer_reports(self):
        return [l for l in self.log_text().splitlines() if SANITIZER_RE.search(l)]


def finish_server(srv, problems, expect_exit=0):
    """Stop srv, add a problem for a bad exit status or a sanitizer report."""
    if not srv.alive():
        problems.append("server died during the scenario: exit status %s"
                        % srv.proc.returncode)
        detail("server log:\n" + srv.log_tail(20))
        srv.stop()
        return srv.proc.returncode
    st = srv.stop()
    if expect_exit is not None and st != expect_exit:
        problems.append("server exit status %s after SIGTERM (want %s)" % (st, expect_exit))
        detail("server log:\n" + srv.log_tail(20))
    san = srv.sanitizer_reports()
    if san:
        problems.append("sanitizer report in the server log")
        detail("sanitizer:\n" + "\n".join("    | " + l for l in san[:20]))
    return st


# ---------------------------------------------------------------- client --

class SmtpError(Exception):
    pass


class Client:
    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer
        self.transcript = []

    @classmethod
    async def open(cls, port, timeout=10.0):
        r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port, limit=1 << 22), timeout)
        return cls(r, w)

    async def reply(self, timeout=15.0):
        """(code, [lines]) of one reply; SmtpError on EOF or a malformed line."""
        lines = []
        while True:
            raw = await asyncio.wait_for(self.r.readline(), timeout)
            if not raw:
                raise SmtpError("connection closed after %r" % (lines,))
            m = REPLY_RE.match(raw)
            if not m:
                raise SmtpError("malformed reply line %r" % raw[:200])
            lines.append(raw[:-2].decode("latin-1"))
            if lines and m.group(1) != raw[:3]:
                raise SmtpError("reply code changed mid-reply")
            if m.group(2) == b" ":
                return int(m.group(1)), lines

    async def send(self, data):
        self.w.write(data)
        await self.w.drain()

    async def cmd(self, line, timeout=15.0):
        if isinstance(line, str):
            line = line.encode()
        await self.send(line + b"\r\n")
        return await self.reply(timeout)

    async def expect(self, line, want, timeout=15.0):
        code, lines = await self.cmd(line, timeout)
        if code != want:
            raise SmtpError("%r: got %s %r, want %d" % (line[:60], code, lines[-1][:120], want))
        return lines

    async def until_eof(self, timeout):
        """All bytes until the server closes; None on timeout."""
        chunks = []
        try:
            async def read_all():
                while True:
                    b = await self.r.read(65536)
                    if not b:
                        return
                    chunks.append(b)
            await asyncio.wait_for(read_all(), timeout)
        except asyncio.TimeoutError:
            return None
        except (ConnectionError, OSError):
            pass
        return b"".join(chunks)

    def close(self):
        try:
            self.w.transport.abort()
        except Exception:
            pass


def stuff(data):
    """RFC 5321 4.5.2 dot-stuffing of CRLF text ending in CRLF, plus the end."""
    out = []
    for line in data.split(b"\r\n")[:-1]:
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out) + b"\r\n.\r\n"


TEXT = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_!?()[]<>=+*/\t"
ODD_LINES = [b".", b"..", b".leading dot", b"..two dots", b". ", b"From the start",
             b">From quoted", b"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7", b"latin-1 \xe9\xe8\xff",
             b"", b"   indented", b"trailing spaces   ", b"\ttab", b"-- ", b"=?utf-8?q?x?="]


def make_message(tag, rng, size):
    """A message (CRLF text ending in CRLF) of about size bytes, unique by tag."""
    t = tag.encode()
    lines = [b"From: Torture <torture@luamta.test>", b"To: <sink@luamta.test>",
             b"Subject: torture " + t, b"Message-ID: <" + t + b">", b"X-Torture: " + t, b""]
    total = sum(len(l) + 2 for l in lines)
    while total < size:
        if rng.random() < 0.2:
            line = rng.choice(ODD_LINES)
        else:
            n = rng.randrange(0, 200)
            line = bytes(rng.choice(TEXT) for _ in range(n)) if n < 40 else \
                (t + b" " + bytes(rng.choice(TEXT) for _ in range(30))) * (n // 60 + 1)
        lines.append(line)
        total += len(line) + 2
    lines.append(b"end of " + t)
    return b"\r\n".join(lines) + b"\r\n"


async def send_message(c, data, sender="torture@luamta.test", rcpt="sink@luamta.test",
                       timeout=30.0):
    """One transaction; returns the final code (the client keeps going)."""
    code, _ = await c.cmd("MAIL FROM:<%s>" % sender, timeout)
    if code != 250:
        return code
    code, _ = await c.cmd("RCPT TO:<%s>" % rcpt, timeout)
    if code != 250:
        await c.expect("RSET", 250, timeout)
        return code
    code, _ = await c.cmd("DATA", timeout)
    if code != 354:
        return code
    await c.send(stuff(data))
    code, _ = await c.reply(timeout)
    return code


async def normal_session(port, data, timeout=30.0):
    """Connect, EHLO, one message, QUIT; returns (ok, seconds, why)."""
    t0 = time.monotonic()
    c = None
    try:
        c = await Client.open(port, timeout)
        code, _ = await c.reply(timeout)
        if code != 220:
            return False, time.monotonic() - t0, "greeting %d" % code
        await c.expect("EHLO normal.test", 250, timeout)
        code = await send_message(c, data, timeout=timeout)
        if code != 250:
            return False, time.monotonic() - t0, "message answered %d" % code
        await c.expect("QUIT", 221, timeout)
        return True, time.monotonic() - t0, ""
    except (SmtpError, OSError, asyncio.TimeoutError) as e:
        return False, time.monotonic() - t0, "%s: %s" % (type(e).__name__, e)
    finally:
        if c:
            c.close()


# --------------------------------------------------------------- maildir --

def strip_received(data):
    """The message without the Received: field luamta puts on top of every
    message it accepts (its continuation lines start with a tab); data as
    it is when there is none, which then differs from what was sent."""
    if not data.startswith(b"Received: "):
        return data
    end = data.find(b"\r\n")
    while end != -1 and data[end + 2:end + 3] in (b" ", b"\t"):
        end = data.find(b"\r\n", end + 2)
    return data if end == -1 else data[end + 2:]


def check_maildir(md, expected, acked):
    """Compare a Maildir with what was sent.

    expected: tag -> bytes for every message whose final dot was sent;
    acked: the tags that got 250. Returns a dict of counts and examples."""
    res = {"files": 0, "exact": 0, "dup": 0, "corrupt": 0, "unknown": 0, "lost": 0,
           "unacked_on_disk": 0, "tmp_left": 0, "cur": 0, "examples": []}
    seen = {}
    new = os.path.join(md, "new")
    names = sorted(os.listdir(new)) if os.path.isdir(new) else []
    for name in names:
        res["files"] += 1
        with open(os.path.join(new, name), "rb") as f:
            data = strip_received(f.read())
        m = MSGID_RE.search(data)
        tag = m.group(1).decode("latin-1") if m else None
        if tag is None or tag not in expected:
            res["unknown"] += 1
            res["examples"].append("new/%s: no known Message-ID (%d bytes, starts %r)"
                                   % (name, len(data), data[:60]))
            continue
        seen[tag] = seen.get(tag, 0) + 1
        if seen[tag] > 1:
            res["dup"] += 1
            res["examples"].append("new/%s: second copy of %s" % (name, tag))
        if data != expected[tag]:
            res["corrupt"] += 1
            want = expected[tag]
            i = next((k for k in range(min(len(data), len(want))) if data[k] != want[k]),
                     min(len(data), len(want)))
            res["examples"].append("new/%s: %s differs at byte %d (%d bytes on disk, %d sent)"
                                   % (name, tag, i, len(data), len(want)))
        elif seen[tag] == 1:
            res["exact"] += 1
            if tag not in acked:
                res["unacked_on_disk"] += 1
    for tag in acked:
        if tag not in seen:
            res["lost"] += 1
            if len(res["examples"]) < 20:
                res["examples"].append("%s got 250 but is not in new/" % tag)
    for sub, key in (("tmp", "tmp_left"), ("cur", "cur")):
        p = os.path.join(md, sub)
        res[key] = len(os.listdir(p)) if os.path.isdir(p) else 0
    return res


def delivered_tags(md):
    """The Message-IDs of the files in md/new."""
    tags = set()
    new = os.path.join(md, "new")
    for name in (os.listdir(new) if os.path.isdir(new) else []):
        with open(os.path.join(new, name), "rb") as f:
            m = MSGID_RE.search(f.read())
        if m:
            tags.add(m.group(1).decode("latin-1"))
    return tags


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def ms(x):
    return "%.1f" % (x * 1000.0)


# -------------------------------------------------------------- scenarios --

class Result:
    def __init__(self, name):
        self.name = name
        self.fields = {"sessions": 0, "messages": 0, "failures": 0, "lost": 0}
        self.problems = []

    def line(self):
        ok = not self.problems and self.fields["failures"] == 0 and self.fields["lost"] == 0
        parts = ["scenario=" + self.name] + ["%s=%s" % kv for kv in self.fields.items()]
        return ok, "TORTURE " + " ".join(parts) + " result=" + ("PASS" if ok else "FAIL")


async def gather_bounded(coros, limit):
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


# 1. Concurrency ------------------------------------------------------------

async def sc_concurrency(opts, res):
    n = 50 if opts.smoke else 1000
    per = 3
    md = os.path.join(opts.tmp, "concurrency-Maildir")
    srv = Server(opts, "concurrency", ["--max-connections", str(n + 100), "--timeout", "60",
                                       "--data-timeout", "60"],
                 script=os.path.join(opts.source, "examples/maildir.lua"), env={"MAILDIR": md})
    rng = random.Random(opts.seed)
    expected, acked = {}, set()
    errors = []
    arrived = [0]
    all_in = asyncio.Event()
    peak_open = [0, 0]  # now, max

    def msg_size():
        r = rng.random()
        return 300 if r < 0.3 else (2000 if r < 0.8 else (20000 if r < 0.98 else 200000))

    for i in range(n):
        for j in range(per):
            tag = "torture-conc-%d-%d-%d@luamta.test" % (opts.seed, i, j)
            expected[tag] = make_message(tag, rng, msg_size())

    async def session(i):
        c = None
        try:
            c = await Client.open(srv.port, 30)
            peak_open[0] += 1
            peak_open[1] = max(peak_open[1], peak_open[0])
            code, _ = await c.reply(30)
            if code != 220:
                raise SmtpError("greeting %d" % code)
            await c.expect("EHLO client-%d.test" % i, 250, 30)
            arrived[0] += 1
            if arrived[0] >= n:
                all_in.set()
            try:
                await asyncio.wait_for(all_in.wait(), 60)
            except asyncio.TimeoutError:
                pass
            for j in range(per):
                tag = "torture-conc-%d-%d-%d@luamta.test" % (opts.seed, i, j)
                code = await send_message(c, expected[tag], rcpt="rcpt-%d-%d@luamta.test" % (i, j),
                                          timeout=60)
                if code == 250:
                    acked.add(tag)
                else:
                    errors.append("session %d message %d: %d" % (i, j, code))
            await c.expect("QUIT", 221, 30)
        except (SmtpError, OSError, asyncio.TimeoutError) as e:
            errors.append("session %d: %s: %s" % (i, type(e).__name__, e))
        finally:
            if c:
                peak_open[0] -= 1
                c.close()

    t0 = time.monotonic()
    # Connecting 1,000 at once is fine for the kernel (somaxconn 4096), but
    # stagger the SYNs a little so no client pays a 1 s SYN retransmit.
    tasks = []
    for i in range(n):
        tasks.append(asyncio.ensure_future(session(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(asyncio.gather(*tasks), opts.deadline)
    elapsed = time.monotonic() - t0
    hwm = srv.status("VmHWM")
    finish_server(srv, res.problems)
    chk = check_maildir(md, expected, acked)
    res.fields.update(sessions=n, messages=len(acked),
                      failures=len(errors) + chk["corrupt"] + chk["dup"] + chk["unknown"],
                      lost=chk["lost"])
    res.fields["concurrent"] = min(arrived[0], peak_open[1])
    res.fields["exact"] = chk["exact"]
    res.fields["dup"] = chk["dup"]
    res.fields["corrupt"] = chk["corrupt"]
    res.fields["peak_rss_kib"] = hwm
    res.fields["seconds"] = "%.1f" % elapsed
    if chk["exact"] != n * per:
        res.problems.append("%d of %d messages on disk byte-exact" % (chk["exact"], n * per))
    for e in errors[:10] + chk["examples"][:10]:
        detail(e)


# 2. Slowloris --------------------------------------------------------------

async def sc_slowloris(opts, res):
    t_out = 2 if opts.smoke else 3
    nslow = 20 if opts.smoke else 300
    # A dripping client is given this long to be cut off.
    horizon = 3 * t_out + 2 if opts.smoke else 4 * t_out + 4
    kinds = ["idle", "stall_cmd", "stall_data", "drip_cmd", "drip_data"]
    srv = Server(opts, "slowloris", ["--timeout", str(t_out), "--data-timeout", str(t_out),
                                     "--max-connections", str(nslow + 100)])
    outcome = {k: [] for k in kinds}  # kind -> [(cut_seconds or None, last_reply)]
    connected = [0]
    all_connected = asyncio.Event()
    done = asyncio.Event()

    async def slow(i, kind):
        c = None
        t_start = None
        last = ""
        cut = None
        try:
            c = await Client.open(srv.port, 30)
            code, _ = await c.reply(30)
            if kind in ("stall_data", "drip_data"):
                await c.expect("EHLO slow-%d.test" % i, 250, 30)
                await c.expect("MAIL FROM:<slow@luamta.test>", 250, 30)
                await c.expect("RCPT TO:<sink@luamta.test>", 250, 30)
                await c.expect("DATA", 354, 30)
            connected[0] += 1
            if connected[0] >= nslow:
                all_connected.set()
            t_start = time.monotonic()
            if kind == "stall_cmd":
                await c.send(b"EHLO stalling-mid-comm")
            elif kind == "stall_data":
                await c.send(b"Subject: stalled\r\n\r\nhalf a li")
            eof = asyncio.ensure_future(c.until_eof(horizon))
            if kind.startswith("drip"):
                payload = b"NOOP dripping " if kind == "drip_cmd" else b""
                k = 0
                while not eof.done() and time.monotonic() - t_start < horizon:
                    b = payload[k:k + 1] if k < len(payload) else b"x"
                    k += 1
                    try:
                        c.w.write(b)
                    except Exception:
                        break
                    await asyncio.wait([eof], timeout=1.0)
            data = await eof
            if data is not None:
                cut = time.monotonic() - t_start
                tail = [l for l in data.split(b"\r\n") if l]
                last = tail[-1].decode("latin-1") if tail else "(no reply)"
            else:
                last = "(still open after %ds)" % horizon
        except (SmtpError, OSError, asyncio.TimeoutError) as e:
            last = "%s: %s" % (type(e).__name__, e)
            if t_start is not None:
                cut = time.monotonic() - t_start
            else:
                connected[0] += 1
                if connected[0] >= nslow:
                    all_connected.set()
        finally:
            if c:
                c.close()
        outcome[kind].append((cut, last))

    lat, normal_err = [], []

    async def normal():
        try:
            await asyncio.wait_for(all_connected.wait(), 60)
        except asyncio.TimeoutError:
            normal_err.append("slow clients not all connected after 60 s")
        rng = random.Random(opts.seed + 2)
        k = 0
        # Several sessions while the stalled clients are still connected
        # (before the timeout), and on while the dripping ones are.
        while (k < 5 or not done.is_set()) and k < 200:
            ok, secs, why = await normal_session(srv.port, make_message(
                "torture-slow-normal-%d@luamta.test" % k, rng, 2000))
            lat.append(secs)
            if not ok:
                normal_err.append("normal session %d: %s" % (k, why))
            k += 1
            await asyncio.sleep(0.2 if k < 5 else 0.5)

    t0 = time.monotonic()
    slows = [asyncio.ensure_future(slow(i, kinds[i % len(kinds)])) for i in range(nslow)]
    nt = asyncio.ensure_future(normal())
    await asyncio.wait_for(asyncio.gather(*slows), opts.deadline)
    done.set()
    await asyncio.wait_for(nt, opts.deadline)
    elapsed = time.monotonic() - t0
    hwm = srv.status("VmHWM")
    finish_server(srv, res.problems)

    failures = len(normal_err)
    slack = 3.0 if not opts.smoke else 5.0
    cutinfo = []
    for kind in kinds:
        got = outcome[kind]
        good = 0
        times = [c for c, _ in got if c is not None]
        for cut, last in got:
            within = cut is not None and cut <= (t_out + slack if kind.startswith(("idle", "stall"))
                                                 else horizon)
            if within and last.startswith("421 4.4.2"):
                good += 1
        failures += len(got) - good
        cutinfo.append("%s=%d/%d" % (kind, good, len(got)))
        med = statistics.median(times) if times else None
        examples = sorted(set(l for _, l in got))[:3]
        detail("%-10s cut off with 421 4.4.2: %d/%d, median time to close %s, last lines seen: %s"
               % (kind, good, len(got), "%.1fs" % med if med is not None else "never",
                  " | ".join(examples)))
        if good != len(got):
            res.problems.append("%s clients not cut off by the timeout" % kind)
    for e in normal_err[:10]:
        detail(e)
    slow_lat = max(lat) if lat else 0
    if slow_lat > 5:
        res.problems.append("normal session took %.1fs" % slow_lat)
    res.fields.update(sessions=nslow + len(lat), messages=len(lat) - len(normal_err),
                      failures=failures, lost=0)
    res.fields["slow_clients"] = nslow
    res.fields["cut_off"] = ",".join(cutinfo)
    res.fields["normal_sessions"] = len(lat)
    res.fields["normal_p50_ms"] = ms(pct(lat, 50))
    res.fields["normal_max_ms"] = ms(slow_lat)
    res.fields["timeout_s"] = t_out
    res.fields["peak_rss_kib"] = hwm
    res.fields["seconds"] = "%.1f" % elapsed


# 3. Hostile input ----------------------------------------------------------

async def open_greeted(port, helo="hostile.test"):
    c = await Client.open(port, 10)
    code, _ = await c.reply(10)
    if code != 220:
        raise SmtpError("greeting %d" % code)
    if helo:
        await c.expect("EHLO " + helo, 250)
    return c


async def replies_for(c, lines, timeout=15.0):
    """Send each line, collect (line, code) for each reply."""
    out = []
    for line in lines:
        code, text = await c.cmd(line, timeout)
        out.append((line, code, text[-1]))
    return out


async def hostile_nul(opts, srv, ctx):
    c = await open_greeted(srv.port, None)
    try:
        got = await replies_for(c, [b"EHLO nul\x00host.test", b"HELO \x00", b"\x00\x00\x00",
                                    b"NOOP\x00", b"MAIL FROM:<a\x00b@luamta.test>",
                                    b"EHLO clean.test", b"MAIL FROM:<x@luamta.test> \x00=1",
                                    b"RSET", b"VRFY \x00root"])
        codes = " ".join("%d" % code for _, code, _ in got)
        await c.expect("NOOP", 250)
        # A NUL inside a message body is 8-bit data, not an end of anything:
        # either stored byte-exact or refused, never cut.
        tag = "torture-hostile-nuldata@luamta.test"
        data = make_message(tag, random.Random(1), 500).replace(b"end of", b"nul\x00in\x00body")
        code = await send_message(c, data)
        if code == 250:
            ctx["expected"][tag] = data
            ctx["acked"].add(tag)
        await c.expect("QUIT", 221)
        return True, "replies %s; message with NULs answered %d" % (codes, code)
    finally:
        c.close()


async def hostile_long_line(opts, srv, ctx):
    c = await open_greeted(srv.port, "long.test")
    try:
        notes = []
        await c.send(b"EHLO " + b"a" * (1 << 20) + b"\r\nNOOP\r\n")
        codes = []
        while True:
            code, text = await c.reply(30)
            codes.append(code)
            if code == 250 or len(codes) > 5000:
                break
        notes.append("1 MiB EHLO: %d reply(ies) %s then NOOP %d" % (
            len(codes) - 1, sorted(set(codes[:-1])), codes[-1]))
        ok = codes[-1] == 250 and len(codes) >= 2 and all(500 <= x < 600 for x in codes[:-1])
        if len(codes) != 2:
            notes.append("(want exactly one 500 for the long line)")
            ok = False
        # 1 MiB header line inside DATA: beyond RFC 5321's 1,000 octets; the
        # server may refuse it, but if it says 250 the file must be exact.
        tag = "torture-hostile-longdata@luamta.test"
        data = make_message(tag, random.Random(2), 300).replace(
            b"X-Torture: ", b"X-Long: " + b"b" * (1 << 20) + b"\r\nX-Torture: ")
        code = await send_message(c, data)
        if code == 250:
            ctx["expected"][tag] = data
            ctx["acked"].add(tag)
        notes.append("1 MiB line in DATA answered %d" % code)
        await c.expect("NOOP", 250)
        await c.expect("QUIT", 221)
    finally:
        c.close()
    # 1 MiB with no line end at all, then close.
    c = await open_greeted(srv.port, "noeol.test")
    await c.send(b"MAIL FROM:<" + b"c" * (1 << 20))
    c.close()
    return ok, "; ".join(notes)


async def hostile_rcpt_flood(opts, srv, ctx):
    n = 20000 if opts.smoke else 1000000
    maxr = ctx["max_rcpt"]
    c = await open_greeted(srv.port, "flood.test")
    hwm0 = srv.status("VmHWM")
    counts = {}
    lat = []
    try:
        await c.expect("MAIL FROM:<flood@luamta.test>", 250)

        async def reader():
            for k in range(n):
                code, text = await c.reply(60)
                counts[code] = counts.get(code, 0) + 1
                if k == maxr and code != 452:
                    counts["first_after_cap"] = text[-1]

        async def writer():
            chunk = []
            for k in range(n):
                chunk.append(b"RCPT TO:<flood-%d@luamta.test>\r\n" % k)
                if len(chunk) == 40000:
                    await c.send(b"".join(chunk))
                    chunk = []
            if chunk:
                await c.send(b"".join(chunk))

        async def normal_during():
            rng = random.Random(5)
            k = 0
            while not rd.done() and k < 50:
                tag = "torture-flood-normal-%d@luamta.test" % k
                data = make_message(tag, rng, 1000)
                ctx["expected"][tag] = data
                ok, secs, why = await normal_session(srv.port, data, timeout=30)
                if ok:
                    ctx["acked"].add(tag)
                lat.append((ok, secs, why))
                k += 1
                await asyncio.sleep(0.2)

        t0 = time.monotonic()
        cpu0 = srv.cpu()
        rd = asyncio.ensure_future(reader())
        nd = asyncio.ensure_future(normal_during())
        await asyncio.wait_for(asyncio.gather(writer(), rd), 300)
        secs = time.monotonic() - t0
        cpu = srv.cpu() - cpu0
        await nd
        await c.expect("RSET", 250)
        await c.expect("QUIT", 221)
    finally:
        c.close()
    hwm1 = srv.status("VmHWM")
    ctx["flood_hwm"] = hwm1
    ok = counts.get(250, 0) == maxr and counts.get(452, 0) == n - maxr
    bad = [x for x in lat if not x[0]]
    worst = max((s for _, s, _ in lat), default=0)
    ctx["flood_normal_max"] = worst
    if bad or worst > 5:
        ok = False
    return ok, ("%d RCPTs in %.1fs (server CPU %.2fs): 250 x %d, 452 x %d, other %s; VmHWM %s -> %s KiB; "
                "normal sessions during the flood: %d (%d failed), slowest %.0f ms%s"
                % (n, secs, cpu, counts.get(250, 0), counts.get(452, 0),
                   {k: v for k, v in counts.items() if k not in (250, 452)},
                   hwm0, hwm1, len(lat), len(bad), worst * 1000,
                   ("; " + bad[0][2]) if bad else ""))


async def hostile_rcpt_noread(opts, srv, ctx):
    """Pipeline RCPTs and never read a reply: the server must stop reading
    (backpressure) instead of buffering replies without bound."""
    c = await open_greeted(srv.port, "noread.test")
    await c.expect("MAIL FROM:<noread@luamta.test>", 250)
    block = b"".join(b"RCPT TO:<noread-%d@luamta.test>\r\n" % k for k in range(20000))
    sent = 0
    limit = (20 if opts.smoke else 200) << 20
    t0 = time.monotonic()
    while sent < limit and time.monotonic() - t0 < (3 if opts.smoke else 8):
        c.w.write(block)
        try:
            await asyncio.wait_for(c.w.drain(), 1.0)
        except asyncio.TimeoutError:
            break
        sent += len(block)
    await asyncio.sleep(0.5)
    hwm = srv.status("VmHWM")
    rss = srv.status("VmRSS")
    c.close()
    ctx["noread_hwm"] = hwm
    stalled = sent < limit
    return True, ("client wrote %.1f MiB of RCPTs without reading before %s; "
                  "server VmRSS %s KiB, VmHWM %s KiB"
                  % (sent / 1048576.0, "the server stopped reading" if stalled
                     else "the byte limit (the server never pushed back)", rss, hwm))


async def hostile_oversize(opts, srv, ctx):
    """A message 4x over --max-size: read to its end, refused 552, not kept."""
    c = await open_greeted(srv.port, "big.test")
    tag = "torture-hostile-oversize@luamta.test"
    try:
        await c.expect("MAIL FROM:<big@luamta.test>", 250)
        await c.expect("RCPT TO:<sink@luamta.test>", 250)
        await c.expect("DATA", 354)
        line = b"y" * 998 + b"\r\n"
        body = b"Message-ID: <" + tag.encode() + b">\r\n\r\n" + line * (4 * ctx["max_size"] // 1000)
        await c.send(body + b".\r\n")
        code, text = await c.reply(60)
        await c.expect("NOOP", 250)
        await c.expect("QUIT", 221)
    finally:
        c.close()
    ctx["never"].add(tag)
    return code == 552, "%.1f MiB message with --max-size %d answered %d %s; VmHWM %s KiB" % (
        len(body) / 1048576.0, ctx["max_size"], code, text[-1][4:40], srv.status("VmHWM"))


async def hostile_conn_flood(opts, srv, ctx):
    """More connections than --max-connections: the extra ones get
    421 4.3.2 and are closed; once they are gone the server serves again."""
    maxc = ctx["max_conn"]
    n = maxc + 40
    conns, greet = [], {}
    # A session whose client reset the connection keeps its slot while it
    # lingers (up to 5 s) to flush its last reply, so this test runs early.
    await asyncio.sleep(0.5)
    try:
        for _ in range(n):
            c = await Client.open(srv.port, 10)
            conns.append(c)
        for c in conns:
            try:
                code, lines = await c.reply(10)
            except SmtpError:
                code, lines = 0, ["(closed)"]
            key = lines[-1][:9] if code != 220 else "220"
            greet[key] = greet.get(key, 0) + 1
    finally:
        for c in conns:
            c.close()
    await asyncio.sleep(0.3)
    ok = greet.get("220", 0) == maxc and greet.get("421 4.3.2", 0) == n - maxc
    if opts.workers:
        # The limit is per worker and a worker that is full still accepts
        # (and refuses) the clients it takes: only bounds can be checked.
        ok = greet.get("220", 0) + greet.get("421 4.3.2", 0) == n and \
            maxc <= greet.get("220", 0) <= maxc * opts.workers
    return ok, "%d connections with --max-connections %d: %s" % (n, maxc, greet)


async def hostile_unterminated(opts, srv, ctx):
    notes = []
    cases = [("mid-line", b"half a line"), ("after CRLF.", b"last line\r\n."),
             ("bare-LF dot", b"smuggle\n.\n"), ("CRLF.LF", b"smuggle\r\n.\n"),
             ("LF.CRLF", b"smuggle\n.\r\n")]
    for i, (name, tail) in enumerate(cases):
        tag = "torture-hostile-cut-%d@luamta.test" % i
        c = await open_greeted(srv.port, "cut.test")
        await c.expect("MAIL FROM:<cut@luamta.test>", 250)
        await c.expect("RCPT TO:<sink@luamta.test>", 250)
        await c.expect("DATA", 354)
        await c.send(b"Message-ID: <" + tag.encode() + b">\r\n\r\n" + b"body\r\n" * 1000 + tail)
        await asyncio.sleep(0.05)
        c.close()
        ctx["never"].add(tag)
        notes.append(name)
    return True, "closed mid-DATA after: " + ", ".join(notes)


async def hostile_utf8(opts, srv, ctx):
    c = await open_greeted(srv.port, None)
    try:
        got = await replies_for(c, [
            b"EHLO \xff\xfe.test", b"EHLO utf8.test",
            b"MAIL FROM:<\xc3\x28@luamta.test> SMTPUTF8",
            b"RCPT TO:<\xed\xa0\x80@\xff\xfe.test>", b"RCPT TO:<\xf8\x88\x80\x80\x80@luamta.test>",
            b"RSET", b"MAIL FROM:<\xe2\x82@luamta.test>", b"RSET",
            b"MAIL FROM:<ok@luamta.test> BODY=8BITMIME AUTH=\xff",
            b"RSET", b"VRFY \xc0\xaf", b"\xff\xfe\xfd verb", b"NOOP \xef\xbf\xbe"])
        await c.expect("NOOP", 250)
        # Invalid UTF-8 in an accepted path: the message must still be stored.
        tag = "torture-hostile-utf8@luamta.test"
        data = make_message(tag, random.Random(3), 400)
        code, _ = await c.cmd(b"MAIL FROM:<\xc3\xa9t\xc3\xa9@luamta.test> SMTPUTF8")
        code2, _ = await c.cmd(b"RCPT TO:<\xe2\x82@luamta.test>")
        notes = "MAIL(valid UTF-8) %d, RCPT(invalid UTF-8) %d" % (code, code2)
        if code == 250 and code2 == 250:
            await c.expect("DATA", 354)
            await c.send(stuff(data))
            code3, _ = await c.reply()
            if code3 == 250:
                ctx["expected"][tag] = data
                ctx["acked"].add(tag)
            notes += ", message %d" % code3
        else:
            await c.expect("RSET", 250)
        await c.expect("QUIT", 221)
    finally:
        c.close()
    codes = ", ".join("%r->%d" % (l[:24], code) for l, code, _ in got)
    return True, codes + "; " + notes


async def hostile_after_quit(opts, srv, ctx):
    c = await open_greeted(srv.port, "quit.test")
    garbage = (b"QUIT\r\nMAIL FROM:<after@luamta.test>\r\nRCPT TO:<x@luamta.test>\r\nDATA\r\n"
               b"Subject: after quit\r\n\r\nhello\r\n.\r\nNOOP\r\n" + os.urandom(1 << 16) +
               b"\r\nQUIT\r\n")
    try:
        await c.send(garbage)
    except OSError:
        pass
    data = await c.until_eof(15)
    c.close()
    if data is None:
        return False, "connection still open 15 s after QUIT"
    lines = [l for l in data.split(b"\r\n") if l]
    ok = len(lines) == 1 and lines[0].startswith(b"221 ")
    return ok, "%d reply line(s) after QUIT + 64 KiB of garbage: %r" % (
        len(lines), [l[:40] for l in lines[:4]])


async def hostile_binary(opts, srv, ctx):
    """Random bytes (and a TLS ClientHello) on the plaintext port."""
    c = await open_greeted(srv.port, None)
    hello = bytes.fromhex("16030100a5010000a10303") + os.urandom(200)
    junk = hello + os.urandom(1 << 18)
    try:
        await c.send(junk + b"\r\nNOOP\r\nQUIT\r\n")
    except OSError:
        pass
    data = await c.until_eof(30)
    c.close()
    if data is None:
        return False, "connection still open 30 s after 256 KiB of random bytes and QUIT"
    lines = [l for l in data.split(b"\r\n") if l]
    bad = [l for l in lines if not re.match(rb"^\d{3}[ -]", l)]
    return not bad, "256 KiB of random bytes: %d reply lines, last %r%s" % (
        len(lines), lines[-1][:40] if lines else b"", ", malformed %r" % bad[:2] if bad else "")


async def sc_hostile(opts, res):
    md = os.path.join(opts.tmp, "hostile-Maildir")
    maxr = 1000
    maxc, maxs = 100, 2 << 20
    srv = Server(opts, "hostile", ["--max-recipients", str(maxr), "--max-connections", str(maxc),
                                   "--max-size", str(maxs), "--timeout", "30",
                                   "--data-timeout", "30"],
                 script=os.path.join(opts.source, "examples/maildir.lua"), env={"MAILDIR": md})
    ctx = {"expected": {}, "acked": set(), "never": set(), "max_rcpt": maxr,
           "max_conn": maxc, "max_size": maxs}
    tests = [("conn_flood", hostile_conn_flood), ("nul", hostile_nul),
             ("long_line", hostile_long_line),
             ("rcpt_flood", hostile_rcpt_flood), ("rcpt_noread", hostile_rcpt_noread),
             ("oversize", hostile_oversize),
             ("unterminated_data", hostile_unterminated), ("invalid_utf8", hostile_utf8),
             ("garbage_after_quit", hostile_after_quit), ("random_bytes", hostile_binary)]
    failed = 0
    sessions = 0
    t0 = time.monotonic()
    for name, fn in tests:
        try:
            ok, why = await asyncio.wait_for(fn(opts, srv, ctx), opts.deadline)
        except (SmtpError, OSError, asyncio.TimeoutError) as e:
            ok, why = False, "%s: %s" % (type(e).__name__, e)
        sessions += 1
        alive = srv.alive()
        if ok and alive:
            ok2, secs, why2 = await normal_session(srv.port, make_message(
                "torture-hostile-after-%s@luamta.test" % name, random.Random(9), 800))
            if not ok2:
                ok, why = False, why + "; normal session afterwards failed: " + why2
            else:
                tag = "torture-hostile-after-%s@luamta.test" % name
                ctx["expected"][tag] = make_message(tag, random.Random(9), 800)
                ctx["acked"].add(tag)
        if not alive:
            ok, why = False, why + "; SERVER DIED (status %s)" % srv.proc.returncode
        if not ok:
            failed += 1
        detail("%-18s %s  %s" % (name, "ok  " if ok else "FAIL", why))
        if not alive:
            detail("server log:\n" + srv.log_tail(20))
            break
    hwm = srv.status("VmHWM")
    log = srv.log_text() if srv.alive() else ""
    finish_server(srv, res.problems)
    # One event is one line: no raw control bytes from the client in the log.
    raw = [l for l in log.splitlines() if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", l)]
    if raw:
        res.problems.append("raw control bytes in %d log line(s)" % len(raw))
        detail("log lines with raw control bytes: %r" % raw[:3])
    chk = check_maildir(md, ctx["expected"], ctx["acked"])
    leaked = delivered_tags(md) & ctx["never"]
    if leaked:
        res.problems.append("delivered although cut off or refused: %s" % sorted(leaked))
    if chk["unknown"] or chk["corrupt"] or chk["dup"]:
        for e in chk["examples"][:10]:
            detail(e)
    res.fields.update(sessions=sessions, messages=len(ctx["acked"]),
                      failures=failed + chk["corrupt"] + chk["dup"] + chk["unknown"],
                      lost=chk["lost"])
    res.fields["peak_rss_kib"] = hwm
    res.fields["flood_rss_kib"] = ctx.get("flood_hwm")
    res.fields["normal_max_ms_during_flood"] = ms(ctx.get("flood_normal_max", 0))
    res.fields["seconds"] = "%.1f" % (time.monotonic() - t0)


# 4. Script faults under load ------------------------------------------------

async def sc_faults(opts, res):
    md = os.path.join(opts.tmp, "faults-Maildir")
    n = 40 if opts.smoke else 600
    kinds = ["error", "loop", "hog", "badret"]
    hooks = ["mail", "rcpt", "message"]
    combos = [(k, h) for k in kinds for h in hooks]
    every = 4 if opts.smoke else 10      # one session in `every` is faulty
    srv = Server(opts, "faults", ["--max-connections", str(n + 100), "--hook-instructions",
                                  "20000000", "--hook-timeout", "3", "--lua-memory",
                                  str(64 << 20), "--timeout", "60", "--data-timeout", "60"],
                 script=os.path.join(opts.source, "spec/fixtures/policies/torture_faults.lua"),
                 env={"MAILDIR": md})
    rng = random.Random(opts.seed + 4)
    expected, acked, never = {}, set(), set()
    good_ok, good_bad, fault_ok, fault_bad = [0], [], [0], []
    nfault = [0]

    async def session(i):
        faulty = i % every == every - 1
        kind, hook = combos[(i // every) % len(combos)] if faulty else (None, None)
        helo = "fault-%s-%s-%d.test" % (kind, hook, i) if faulty else "good-%d.test" % i
        tag = "torture-fault-%d@luamta.test" % i
        data = make_message(tag, rng, 1500)
        expected[tag] = data
        c = None
        want = {"mail": 250, "rcpt": 250, "data": 354, "message": 250}
        if faulty:
            nfault[0] += 1
            want[hook] = 451
            never.add(tag)
        got = {}
        try:
            c = await Client.open(srv.port, 30)
            code, _ = await c.reply(30)
            await c.expect("EHLO " + helo, 250, 60)
            got["mail"], _ = await c.cmd("MAIL FROM:<s-%d@luamta.test>" % i, 60)
            if got["mail"] == 250:
                got["rcpt"], _ = await c.cmd("RCPT TO:<r-%d@luamta.test>" % i, 60)
                if got["rcpt"] == 250:
                    got["data"], _ = await c.cmd("DATA", 60)
                    if got["data"] == 354:
                        await c.send(stuff(data))
                        got["message"], _ = await c.reply(60)
            # The session goes on after a fault: RSET and a NOOP still work.
            await c.expect("RSET", 250, 60)
            await c.expect("NOOP", 250, 60)
            await c.expect("QUIT", 221, 60)
            if got.get("message") == 250:
                acked.add(tag)
            ok = all(got.get(k) == want[k] for k in ["mail", "rcpt", "data", "message"]
                     if k in got) and (got.get(hook) == 451 if faulty else got.get("message") == 250)
        except (SmtpError, OSError, asyncio.TimeoutError) as e:
            ok = False
            got["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            if c:
                c.close()
        if faulty:
            (fault_ok.__setitem__(0, fault_ok[0] + 1) if ok else
             fault_bad.append("%s: %s" % (helo, got)))
        else:
            (good_ok.__setitem__(0, good_ok[0] + 1) if ok else
             good_bad.append("%s: %s" % (helo, got)))

    t0 = time.monotonic()
    await asyncio.wait_for(gather_bounded([session(i) for i in range(n)], 200), opts.deadline)
    elapsed = time.monotonic() - t0
    hwm = srv.status("VmHWM")
    log = srv.log_text()
    finish_server(srv, res.problems)
    for e in (fault_bad + good_bad)[:10]:
        detail(e)
    chk = check_maildir(md, expected, acked)
    leaked = len(delivered_tags(md) & never)
    if leaked:
        res.problems.append("%d messages of faulty sessions were delivered" % leaked)
    herr = len(re.findall(r"hook\.error", log))
    detail("faulty sessions answered 451 where the fault was: %d/%d; good sessions delivered: "
           "%d/%d; hook.error log lines: %d" % (fault_ok[0], nfault[0], good_ok[0],
                                                n - nfault[0], herr))
    res.fields.update(sessions=n, messages=len(acked),
                      failures=len(fault_bad) + len(good_bad) + chk["corrupt"] + chk["dup"] + leaked,
                      lost=chk["lost"])
    res.fields["faulty"] = nfault[0]
    res.fields["faulty_451"] = fault_ok[0]
    res.fields["good_delivered"] = good_ok[0]
    res.fields["peak_rss_kib"] = hwm
    res.fields["seconds"] = "%.1f" % elapsed


# 5. Durability under kill -9 ----------------------------------------------

async def durability_round(opts, rnd, md, workers, expected, acked, rng, notes, problems):
    nclients = 10 if opts.smoke else 50
    args = ["--max-connections", "500", "--timeout", "30", "--data-timeout", "30"]
    if workers:
        args += ["--workers", "2"]
    srv = Server(opts, "durability%d" % rnd, args,
                 script=os.path.join(opts.source, "examples/maildir.lua"), env={"MAILDIR": md})
    stop = asyncio.Event()
    counter = [0]
    nsessions = [0]
    errors = []
    after_kill = [0]
    killed = [False]

    async def client(i):
        k = 0
        while not stop.is_set():
            c = None
            try:
                c = await Client.open(srv.port, 5)
                nsessions[0] += 1
                code, _ = await c.reply(10)
                if code != 220:
                    raise SmtpError("greeting %d" % code)
                await c.expect("EHLO durable-%d.test" % i, 250, 10)
                for _ in range(5):
                    if stop.is_set():
                        break
                    tag = "torture-dur-%d-%d-%d-%d@luamta.test" % (opts.seed, rnd, i, k)
                    k += 1
                    size = 500 if rng.random() < 0.5 else rng.choice([5000, 60000, 300000])
                    data = make_message(tag, rng, size)
                    await c.expect("MAIL FROM:<d@luamta.test>", 250, 10)
                    await c.expect("RCPT TO:<sink@luamta.test>", 250, 10)
                    await c.expect("DATA", 354, 10)
                    expected[tag] = data   # from here it may be on disk
                    await c.send(stuff(data))
                    code, _ = await c.reply(20)
                    if code == 250:
                        acked.add(tag)
                        counter[0] += 1
                        if killed[0]:
                            after_kill[0] += 1
                    else:
                        errors.append("%s answered %d" % (tag, code))
                await c.expect("QUIT", 221, 10)
            except (SmtpError, OSError, asyncio.TimeoutError):
                if not workers and killed[0]:
                    return
                await asyncio.sleep(0.05)
            finally:
                if c:
                    c.close()

    tasks = [asyncio.ensure_future(client(i)) for i in range(nclients)]
    t0 = time.monotonic()
    while counter[0] < 20 and time.monotonic() - t0 < 30:
        await asyncio.sleep(0.05)
    await asyncio.sleep(rng.uniform(0.1, 1.0))
    victim = srv.pid
    if workers:
        kids = srv.children()
        if not kids:
            problems.append("round %d: no worker processes under the master" % rnd)
        else:
            victim = rng.choice(kids)
    before = counter[0]
    os.kill(victim, signal.SIGKILL)
    killed[0] = True
    if workers:
        # The other worker keeps serving and the master restarts the dead
        # one: clients reconnect and go on for a while.
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        died = "worker.died" in srv.log_text()
        st = srv.stop()
        if st != 0:
            problems.append("round %d: master exit status %s after SIGTERM" % (rnd, st))
            detail("server log:\n" + srv.log_tail(15))
        if not died:
            problems.append("round %d: no worker.died in the master's log" % rnd)
        if after_kill[0] == 0:
            problems.append("round %d: no message accepted after the worker was killed" % rnd)
        san = srv.sanitizer_reports()
        if san:
            problems.append("round %d: sanitizer report" % rnd)
            detail("\n".join("    | " + l for l in san[:20]))
        notes.append("round %d (--workers 2, kill -9 worker %d): %d acked before, %d after"
                     % (rnd, victim, before, after_kill[0]))
    else:
        srv.proc.wait()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        srv.log.close()
        notes.append("round %d (--foreground, kill -9 pid %d): %d acked before the kill"
                     % (rnd, victim, before))
    for e in errors[:5]:
        detail("round %d: %s" % (rnd, e))
    return nsessions[0]


async def sc_durability(opts, res):
    md = os.path.join(opts.tmp, "durability-Maildir")
    rounds = [False, True] if opts.smoke else [False, True, False, True, False, True]
    expected, acked = {}, set()
    rng = random.Random(opts.seed + 5)
    notes, sessions = [], 0
    t0 = time.monotonic()
    for rnd, workers in enumerate(rounds):
        sessions += await durability_round(opts, rnd, md, workers, expected, acked, rng,
                                           notes, res.problems)
        # Check after each round, while the evidence is fresh.
    for n in notes:
        detail(n)
    chk = check_maildir(md, expected, acked)
    for e in chk["examples"][:10]:
        detail(e)
    partial = chk["corrupt"] + chk["unknown"]
    detail("new/: %d files, %d byte-exact, %d partial or corrupt, %d duplicated; %d got 250, "
           "%d on disk without a 250 (killed before the reply); tmp/ leftovers: %d"
           % (chk["files"], chk["exact"], partial, chk["dup"], len(acked),
              chk["unacked_on_disk"], chk["tmp_left"]))
    res.fields.update(sessions=sessions, messages=len(acked),
                      failures=partial + chk["dup"], lost=chk["lost"])
    res.fields["kills"] = len(rounds)
    res.fields["partial_in_new"] = partial
    res.fields["on_disk_unacked"] = chk["unacked_on_disk"]
    res.fields["tmp_leftovers"] = chk["tmp_left"]
    res.fields["seconds"] = "%.1f" % (time.monotonic() - t0)


SCENARIOS = [("concurrency", sc_concurrency), ("slowloris", sc_slowloris),
             ("hostile", sc_hostile), ("faults", sc_faults), ("durability", sc_durability),
             ("idle", lambda opts, res: torture_idle.sc_idle(opts, res, sys.modules[__name__]))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--source", default=os.getcwd())
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--workers", type=int, default=0,
                    help="run the servers with --workers N instead of --foreground "
                         "(durability always does one of each)")
    opts = ap.parse_args()
    opts.bin = os.path.abspath(opts.bin)
    opts.deadline = 120 if opts.smoke else 600
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    opts.tmp = tempfile.mkdtemp(prefix="luamta-torture-")
    only = set(x for x in opts.only.split(",") if x)
    say("torture: bin=%s mode=%s workers=%s seed=%d fd_limit=%d tmp=%s" % (
        opts.bin, "smoke" if opts.smoke else "full", opts.workers or "foreground", opts.seed,
        resource.getrlimit(resource.RLIMIT_NOFILE)[0], opts.tmp))
    # Never leave a server behind, whatever ends the run.
    def on_signal(signum, frame):
        sys.exit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    failed = 1
    try:
        failed = run(opts, only)
    finally:
        for srv in ALL_SERVERS:
            if srv.alive():
                srv.kill9()
        if opts.keep:
            say("torture: kept %s" % opts.tmp)
        else:
            shutil.rmtree(opts.tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


def run(opts, only):
    failed = 0
    for name, fn in SCENARIOS:
        if only and name not in only:
            continue
        res = Result(name)
        say("== %s" % name)
        opts.servers = []
        try:
            asyncio.run(fn(opts, res))
        except Exception as e:   # a crash of the harness or a hung scenario
            res.problems.append("%s: %s" % (type(e).__name__, e or "timeout"))
        for srv in opts.servers:
            if srv.alive():
                detail("server still running after the scenario; log:\n" + srv.log_tail(10))
                srv.kill9()
        for p in res.problems:
            detail("problem: " + p)
        ok, line = res.line()
        say(line)
        failed += not ok
    return failed


if __name__ == "__main__":
    main()
