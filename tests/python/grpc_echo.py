"""A real gRPC service and client (grpcio, no generated code: raw bytes
through generic handlers) for tests/grpc.rs.

    python grpc_echo.py serve PORT      serves test.Echo on 127.0.0.1:PORT; prints "ready"
    python grpc_echo.py call TARGET METHOD TOKEN|- unary|bidi|long
        prints {"code": "OK"|"UNAUTHENTICATED"|..., "details": ..., "replies": [...], "seconds": ...}
        (long: a bidi stream sending a message every 100 ms for up to 20 s)
    python grpc_echo.py load TARGET TOKEN SECONDS [IN_FLIGHT]
        unary calls on one channel for SECONDS, IN_FLIGHT (default 1) at a time;
        prints {"calls": N, "seconds": S}

Each reply is "<x-auth-user>|<x-auth-roles>|<request>": what the service saw."""
import json
import sys
import time
from concurrent import futures

import grpc


def seen(context, request):
    md = dict(context.invocation_metadata())
    return f"{md.get('x-auth-user', '-')}|{md.get('x-auth-roles', '-')}|{request.decode()}".encode()


def serve(port):
    def unary(request, context):
        return seen(context, request)

    def bidi(requests, context):
        for request in requests:
            yield seen(context, request)

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Admin": grpc.unary_unary_rpc_method_handler(unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def call(target, method, token, mode):
    # A spoofed identity rides along: the service must see ours instead.
    metadata = [("x-auth-user", "mallory")] + ([] if token == "-" else [("authorization", f"Bearer {token}")])
    out = {"code": "OK", "details": "", "replies": []}
    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        try:
            if mode == "unary":
                stub = channel.unary_unary(f"/test.Echo/{method}")
                out["replies"] = [stub(b"hello", metadata=metadata, timeout=10).decode()]
            elif mode == "bidi":
                stub = channel.stream_stream(f"/test.Echo/{method}")
                replies = stub(iter([b"one", b"two", b"three"]), metadata=metadata, timeout=10)
                out["replies"] = [r.decode() for r in replies]
            else:
                def paced():
                    for i in range(200):
                        yield str(i).encode()
                        time.sleep(0.1)

                stub = channel.stream_stream(f"/test.Echo/{method}")
                for reply in stub(paced(), metadata=metadata, timeout=30):
                    out["replies"].append(reply.decode())
        except grpc.RpcError as e:
            out["code"], out["details"] = e.code().name, e.details()
    out["seconds"] = time.monotonic() - started
    print(json.dumps(out))


def load(target, token, seconds, in_flight="1"):
    metadata = [] if token == "-" else [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary("/test.Echo/Unary")
        stub(b"warm-up", metadata=metadata, timeout=10)
        calls, started = 0, time.monotonic()
        window = []
        while time.monotonic() - started < float(seconds):
            while len(window) < int(in_flight):
                window.append(stub.future(b"x", metadata=metadata, timeout=10))
            window.pop(0).result()
            calls += 1
        for call in window:
            call.result()
            calls += 1
        print(json.dumps({"calls": calls, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "load":
        load(*sys.argv[2:6])
    else:
        call(*sys.argv[2:6])
