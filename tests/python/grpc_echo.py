"""A real gRPC service and client (grpcio, no generated code: raw bytes
through generic handlers) for tests/grpc.rs.

    python grpc_echo.py serve PORT      serves test.Echo on 127.0.0.1:PORT; prints "ready"
    python grpc_echo.py call TARGET METHOD TOKEN|- unary|bidi
        prints {"code": "OK"|"UNAUTHENTICATED"|..., "details": ..., "replies": [...]}

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
    with grpc.insecure_channel(target) as channel:
        try:
            if mode == "unary":
                stub = channel.unary_unary(f"/test.Echo/{method}")
                out["replies"] = [stub(b"hello", metadata=metadata, timeout=10).decode()]
            else:
                stub = channel.stream_stream(f"/test.Echo/{method}")
                replies = stub(iter([b"one", b"two", b"three"]), metadata=metadata, timeout=10)
                out["replies"] = [r.decode() for r in replies]
        except grpc.RpcError as e:
            out["code"], out["details"] = e.code().name, e.details()
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        call(*sys.argv[2:6])
