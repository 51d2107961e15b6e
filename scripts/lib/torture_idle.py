"""scripts/lib/torture_idle.py - the "idle" scenario of scripts/torture.

10,000 concurrent connections (1,000 with --smoke) held open and idle on
one worker, each greeted with 220; meanwhile a normal client delivers a
message and a scraper reads the master's /metrics every quarter second.
Reports the worker's resident memory before, with every connection open
and after they closed, and what one idle connection costs. It fails when a
connection is not greeted, the normal message is not accepted, a scrape
fails or the scrapes stop, the connection gauge disagrees with the count,
or the sessions are not all gone after the clients close; the full run also
bounds the memory per idle connection (the smoke run is under the
sanitizers, whose figures mean nothing).

It lives beside torture_run.py (which is long enough) and gets the
runner's Server, Client and helpers as `kit`, so it shares their code
without importing the runner a second time.
"""

import asyncio
import random
import re
import socket
import time

# Per idle connection, the worker's resident memory must stay under this
# (the session and its connection count; the kernel's socket buffers are
# not in RSS): a regression to per-connection buffers of 64 KiB would show
# at once.
MAX_BYTES_PER_CONN = 16 * 1024
GAUGE_RE = re.compile(r"^luamta_connections_current(?:\{[^}]*\})? (\d+(?:\.\d+)?)$", re.M)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def scrape(port, timeout=10.0):
    """GET /metrics over HTTP/1.0: (status, body) or raises."""
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        w.write(b"GET /metrics HTTP/1.0\r\nHost: torture\r\n\r\n")
        await w.drain()
        data = await asyncio.wait_for(r.read(), timeout)
    finally:
        w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body.decode("utf-8", "replace")


def gauge(body):
    """The sum of luamta_connections_current over its labels, or None."""
    vals = [float(v) for v in GAUGE_RE.findall(body)]
    return sum(vals) if vals else None


def worker_rss(srv):
    """The worker's VmRSS in KiB (the one child of the master)."""
    kids = srv.children()
    return srv.status("VmRSS", kids[0]) if kids else None


async def sc_idle(opts, res, kit):
    n = 1000 if opts.smoke else 10000
    mport = free_port()
    srv = kit.Server(opts, "idle", ["--workers", "1", "--max-connections", str(n + 200),
                                    "--max-per-ip", "0", "--metrics", "127.0.0.1:%d" % mport])
    problems = res.problems
    conns = []
    scrapes = {"ok": 0, "failed": 0, "slowest": 0.0, "last": None}
    stop_scraping = asyncio.Event()

    async def scraper():
        while not stop_scraping.is_set():
            t0 = time.monotonic()
            try:
                status, body = await scrape(mport)
                if status != 200:
                    raise RuntimeError("status %d" % status)
                scrapes["ok"] += 1
                scrapes["last"] = body
            except Exception as e:  # any failure to answer counts
                scrapes["failed"] += 1
                if scrapes["failed"] <= 3:
                    kit.detail("metrics scrape failed: %s: %s" % (type(e).__name__, e))
            scrapes["slowest"] = max(scrapes["slowest"], time.monotonic() - t0)
            try:
                await asyncio.wait_for(stop_scraping.wait(), 0.25)
            except asyncio.TimeoutError:
                pass

    async def one(i):
        # Spread over 127.0.0.2-51: no single source address runs out of
        # ephemeral ports, whatever the range.
        src = "127.0.0.%d" % (2 + i % 50)
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(
                kit.HOST, srv.port, local_addr=(src, 0)), 30)
            line = await asyncio.wait_for(r.readline(), 30)
        except (OSError, asyncio.TimeoutError) as e:
            return "%s: %s" % (type(e).__name__, e)
        conns.append(w)
        return None if line.startswith(b"220 ") else "greeting %r" % line[:80]

    # The worker forks after the ready file: wait for it to be serving.
    for _ in range(200):
        if srv.children():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    rss0 = worker_rss(srv)
    scraping = asyncio.ensure_future(scraper())
    t0 = time.monotonic()
    errors = [e for e in await kit.gather_bounded([one(i) for i in range(n)], 200) if e]
    ramp = time.monotonic() - t0
    res.fields["sessions"] = len(conns)
    if errors:
        res.fields["failures"] = len(errors)
        problems.append("%d of %d connections not greeted, e.g. %s" % (len(errors), n, errors[0]))
    await asyncio.sleep(0.5)
    rss1 = worker_rss(srv)
    # A normal client is served while every idle connection stays open.
    msg = kit.make_message("idle-normal", random.Random(opts.seed), 2000)
    ok, secs, why = await kit.normal_session(srv.port, msg)
    res.fields["messages"] = 1 if ok else 0
    if not ok:
        res.fields["failures"] += 1
        problems.append("a normal session failed beside the idle ones: " + why)
    # The gauge counts what is open (the master sums its workers' slots).
    try:
        status, body = await scrape(mport)
        g = gauge(body) if status == 200 else None
    except Exception as e:
        g, body = None, "%s: %s" % (type(e).__name__, e)
    if g is None or int(g) != len(conns):
        problems.append("luamta_connections_current is %s with %d connections open" % (g, len(conns)))
    for w in conns:
        w.transport.abort()
    conns.clear()
    # Every session ends (a reset is seen at once) and the gauge says so.
    deadline = time.monotonic() + 30
    g = None
    while time.monotonic() < deadline:
        try:
            status, body = await scrape(mport)
            g = gauge(body)
        except Exception:
            g = None
        if g == 0:
            break
        await asyncio.sleep(0.2)
    if g != 0:
        problems.append("%s sessions still counted 30 s after every client closed" % g)
    rss2 = worker_rss(srv)
    stop_scraping.set()
    await scraping
    if scrapes["failed"]:
        problems.append("%d of %d metrics scrapes failed" % (scrapes["failed"],
                                                           scrapes["failed"] + scrapes["ok"]))
    if scrapes["ok"] < 2:
        problems.append("only %d metrics scrapes answered" % scrapes["ok"])
    per_conn = (rss1 - rss0) * 1024 // max(n, 1) if rss0 and rss1 else None
    res.fields.update({"connections": n, "ramp_s": "%.1f" % ramp,
                       "rss_kib_before": rss0, "rss_kib_open": rss1, "rss_kib_after": rss2,
                       "bytes_per_idle_conn": per_conn, "scrapes": scrapes["ok"],
                       "slowest_scrape_ms": int(scrapes["slowest"] * 1000)})
    if not opts.smoke and per_conn is not None and per_conn > MAX_BYTES_PER_CONN:
        problems.append("%d bytes of RSS per idle connection (bound %d)"
                        % (per_conn, MAX_BYTES_PER_CONN))
    kit.finish_server(srv, problems)
