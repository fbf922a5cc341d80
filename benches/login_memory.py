#!/usr/bin/env python3
"""RSS of a gateway under a flood of logins (docs/performance.md, "Memory").

Starts the release binary on an embedded store in a temporary directory,
adds a user with the CLI, then logs in (right and wrong passwords, half
each) from N threads for the given time, sampling the gateway's RSS from
/proc every 30 s. Loopback only; stops the gateway at the end.

    cargo build --release
    python3 benches/login_memory.py --minutes 10 --threads 8
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "authgate"))
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    http_port, admin_port = free_port(), free_port()
    with open(os.path.join(work, "g.toml"), "w") as f:
        f.write(f"""[server]
http = "127.0.0.1:{http_port}"
admin = "127.0.0.1:{admin_port}"
[tokens]
signing_key = "main"
[[tokens.keys]]
kid = "main"
algorithm = "ES256"
private_key_file = "main.pem"
generate_if_missing = true
[login]
enabled = true
max_attempts = 1000000
[[route]]
path = "/"
upstream = "builtin:echo"
""")
    subprocess.run([args.bin, "--config", "g.toml", "user", "add", "alice"], cwd=work, input=b"a long password\n", check=True)
    gw = subprocess.Popen([args.bin, "--config", "g.toml"], cwd=work, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    try:
        deadline = time.time() + 10
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("the gateway did not become ready")
            time.sleep(0.05)
        idle = rss_kib(gw.pid)
        print(f"idle RSS: {idle / 1024:.1f} MiB", flush=True)
        stop = time.time() + args.minutes * 60
        counts = {"200": 0, "401": 0, "other": 0}
        lock = threading.Lock()

        def flood(i):
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
            n = 0
            while time.time() < stop:
                password = "a long password" if n % 2 == 0 else "wrong password"
                n += 1
                try:
                    conn.request("POST", "/auth/login", body=json.dumps({"username": "alice", "password": password}),
                                 headers={"content-type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    key = str(r.status) if r.status in (200, 401) else "other"
                except OSError:
                    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
                    key = "other"
                with lock:
                    counts[key] += 1

        threads = [threading.Thread(target=flood, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        peak = idle
        while time.time() < stop:
            time.sleep(min(30, max(0, stop - time.time())))
            rss = rss_kib(gw.pid)
            peak = max(peak, rss)
            print(f"{time.strftime('%H:%M:%S')} RSS {rss / 1024:.1f} MiB, logins {counts}", flush=True)
        for t in threads:
            t.join()
        final = rss_kib(gw.pid)
        print(f"after {args.minutes} min: RSS {final / 1024:.1f} MiB (idle {idle / 1024:.1f}, peak {peak / 1024:.1f}); logins {counts}")
    finally:
        gw.terminate()
        gw.wait(10)


if __name__ == "__main__":
    main()
