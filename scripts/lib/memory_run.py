#!/usr/bin/env python3
"""memory_run.py --bin LUAMTA [--sessions N] [--trickle N]

Measures the resident memory of one luamta worker (--foreground) with its
default limits while clients try to make it hold as much as they can:

  idle       the server alone
  sessions   N sessions from one address (the per-client limit refuses
             those past --max-per-ip; they are counted)
  input      N sessions (from several loopback addresses) that each send
             64 KiB while a hook keeps them parked, so every input buffer
             is full
  data       --trickle clients in DATA each sending 4 MiB and holding it
             without the final dot: --max-data-memory caps what is kept,
             and the clients past it are answered 452 after their dot

One line per step: STEP name=... rss_mib=... and what the step saw. The
figures go in README's "Limits and memory"; nothing here asserts a number.
"""
import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

POLICY = """
local luamta = require "luamta"
return {
  -- a client whose HELO says "park" stays parked, its input buffering up
  on_helo = function(s, name) if name == "park" then luamta.sleep(600) end end,
}
"""


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def start(binary, work):
    policy = os.path.join(work, "policy.lua")
    with open(policy, "w") as f:
        f.write(POLICY)
    ready = os.path.join(work, "ready")
    log = open(os.path.join(work, "log"), "w")
    proc = subprocess.Popen(
        [binary, "--foreground", "--listen", "127.0.0.1:0", "--ready-file", ready,
         "--script", policy, "--limit-exempt", "none", "--timeout", "900",
         "--data-timeout", "900", "--log-level", "warn"],
        stdout=log, stderr=log)
    deadline = time.time() + 20
    while time.time() < deadline:
        if os.path.exists(ready):
            with open(ready) as f:
                line = f.readline().split()
            if line:
                return proc, int(line[1])
        time.sleep(0.05)
    proc.kill()
    sys.exit("luamta did not start")


def connect(port, src="127.0.0.1"):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.settimeout(30)
    return s


def greeting(s):
    data = s.recv(4096)
    return data[:3]


def settle(pid, secs=1.0):
    time.sleep(secs)
    return rss_mib(pid)


def step(name, pid, **fields):
    extra = " ".join("%s=%s" % kv for kv in fields.items())
    print("STEP name=%s rss_mib=%.1f %s" % (name, rss_mib(pid), extra), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--trickle", type=int, default=100)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="luamta-memory.")
    proc, port = start(args.bin, work)
    held = []
    try:
        settle(proc.pid)
        step("idle", proc.pid)

        accepted = refused = 0
        for _ in range(args.sessions):
            s = connect(port)
            if greeting(s) == b"220":
                accepted += 1
                held.append(s)
            else:
                refused += 1
                s.close()
        settle(proc.pid)
        step("sessions", proc.pid, accepted=accepted, refused=refused)
        for s in held:
            s.close()
        held = []
        settle(proc.pid, 2)

        # Just under the 64 KiB at which a connection stops reading: reading
        # goes on, so the reset below is seen at once.
        chunk = b"x" * 60000
        parked = 0
        for i in range(args.sessions):
            s = connect(port, "127.0.%d.%d" % (1 + i // 40, 1 + i % 40))
            if greeting(s) != b"220":
                s.close()
                continue
            s.sendall(b"HELO park\r\n")
            s.setblocking(False)
            try:
                s.send(chunk)
            except BlockingIOError:
                pass
            held.append(s)
            parked += 1
        settle(proc.pid, 3)
        step("input", proc.pid, parked=parked, bytes_each=len(chunk))
        # A reset, not a close: a client that merely closes its side is still
        # owed its replies, so its session would wait for the parked hook.
        for s in held:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        held = []
        settle(proc.pid, 2)

        body = (b"x" * 998 + b"\r\n") * 4200  # about 4 MiB
        trickling = refused_data = 0
        for i in range(args.trickle):
            s = connect(port, "127.1.%d.%d" % (1 + i // 40, 1 + i % 40))
            if greeting(s) != b"220":
                s.close()
                continue
            s.sendall(b"EHLO m\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
            got = b""
            while b"\r\n354 " not in got and b"\r\n452 " not in got:
                more = s.recv(4096)
                if not more:
                    break
                got += more
            if b"\r\n354 " not in got:
                refused_data += 1
                s.close()
                continue
            s.sendall(body)
            held.append(s)
            trickling += 1
        settle(proc.pid, 3)
        step("data", proc.pid, clients=trickling, refused_data=refused_data,
             bytes_each=len(body))
        answers = {}
        for s in held:
            s.sendall(b".\r\n")
        for s in held:
            try:
                data = b""
                while b"\r\n" not in data[-200:] or not data.strip():
                    more = s.recv(4096)
                    if not more:
                        break
                    data += more
                code = data.strip().split(b"\r\n")[-1][:3].decode()
            except OSError:
                code = "error"
            answers[code] = answers.get(code, 0) + 1
            s.close()
        held = []
        step("data_end", proc.pid,
             replies=",".join("%s:%d" % kv for kv in sorted(answers.items())))
    finally:
        for s in held:
            s.close()
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
