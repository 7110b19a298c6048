"""ListPods(detail=true) latency as a C-core gRPC client sees it (Debian's
python3-grpcio, protobuf's C++ decoder): the kind of client monitoring tools
use. Stubs are generated from api-service/v1alpha.proto into STUBS by the
benchmark. Prints one JSON line: {"ms": [per-call latencies], "pods": N}.

    /usr/bin/python3 bench/api-client.py STUBS ADDRESS CALLS WARMUP
"""
import json
import sys
import time

stubs, address, calls, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, stubs)
import grpc  # noqa: E402
import v1alpha_pb2  # noqa: E402
import v1alpha_pb2_grpc  # noqa: E402

with grpc.insecure_channel(address) as channel:
    api = v1alpha_pb2_grpc.PublicAPIStub(channel)
    request = v1alpha_pb2.ListPodsRequest(detail=True)
    for _ in range(warmup):
        api.ListPods(request)
    ms = []
    pods = 0
    for _ in range(calls):
        start = time.perf_counter()
        pods = len(api.ListPods(request).pods)
        ms.append((time.perf_counter() - start) * 1000)
print(json.dumps({"ms": ms, "pods": pods}))
