#!/usr/bin/env python3
"""gRPC unary calls per second through authgate against the same service
called directly (docs/performance.md, "gRPC").

Starts the gRPC echo service of tests/python/grpc_echo.py (grpcio) on one
core and the release gateway (`workers = 1`, an `h2c://` route, ES256
token served from the verified-token cache) on the other; the client
(grpcio, one channel, calls back to back) shares the service's core.
Interleaved rounds, direct then through the gateway; prints the medians
and the ratio. Loopback only; stops what it started.

    cargo build --release
    $VENV/bin/python benches/grpc_calls.py --rounds 3 --seconds 8
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECHO = os.path.join(ROOT, "tests", "python", "grpc_echo.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what):
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not start")


def load(target, token, seconds, cpu, in_flight):
    out = subprocess.run(
        ["taskset", "-c", cpu, sys.executable, ECHO, "load", target, token, str(seconds), str(in_flight)],
        check=True, capture_output=True, text=True,
    )
    result = json.loads(out.stdout)
    return result["calls"] / result["seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--in-flight", type=int, default=1, help="calls outstanding at once on the one channel")
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "authgate"))
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    service_port, http_port, admin_port = free_port(), free_port(), free_port()
    with open(os.path.join(work, "g.toml"), "w") as f:
        f.write(f"""[server]
http = "127.0.0.1:{http_port}"
admin = "127.0.0.1:{admin_port}"
workers = 1
[tokens]
signing_key = "main"
[[tokens.keys]]
kid = "main"
algorithm = "ES256"
private_key_file = "main.pem"
generate_if_missing = true
[[route]]
path = "/test.Echo"
upstream = "h2c://127.0.0.1:{service_port}"
roles = ["user"]
""")
    token = subprocess.run(
        [args.bin, "--config", "g.toml", "token", "--sub", "alice", "--roles", "user", "--ttl", "1h"],
        cwd=work, check=True, capture_output=True, text=True,
    ).stdout.strip()
    service = subprocess.Popen(["taskset", "-c", "0", sys.executable, ECHO, "serve", str(service_port)], stdout=subprocess.DEVNULL)
    gw = subprocess.Popen(
        ["taskset", "-c", "1", args.bin, "--config", "g.toml"], cwd=work,
        stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        wait_port(service_port, "the gRPC service")
        wait_port(http_port, "the gateway")
        direct, through = [], []
        for _ in range(args.rounds):
            direct.append(load(f"127.0.0.1:{service_port}", "-", args.seconds, "0", args.in_flight))
            through.append(load(f"127.0.0.1:{http_port}", token, args.seconds, "0", args.in_flight))
        d, t = statistics.median(direct), statistics.median(through)
        print(json.dumps({
            "direct_calls_per_s": [round(x) for x in direct],
            "through_authgate_calls_per_s": [round(x) for x in through],
            "median_direct": round(d), "median_through": round(t), "ratio": round(t / d, 3),
        }, indent=2))
    finally:
        for p in (gw, service):
            p.terminate()
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
