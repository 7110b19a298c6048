#!/usr/bin/env bash
# Pod start benchmark, one command: build, then measure (see bench/README.md).
#   bash bench/run.sh [--samples N] [--warmup N] [--no-docker] [--no-profile] [--update-results bench/RESULTS.md]
# Cluster benchmark (kubectl apply → Running, agent RSS/CPU at 100 pods) instead, same build step:
#   bash bench/run.sh --cluster [--sequential 50] [--burst 50] [--cpu-window 60] [--no-profile] [--update-results bench/RESULTS.md]
# CNI benchmark (ADD+DEL through our runner vs the bare plugin chain, pod start with vs without network):
#   bash bench/run.sh --cni [--samples N] [--warmup N] [--update-results bench/RESULTS.md]
# Registry pull benchmark (ours vs skopeo copy and containerd's ctr pull, peak RSS at two image sizes), same build step:
#   bash bench/run.sh --pull [--samples 5] [--mb 100] [--small-mb 25] [--layers 4] [--no-containerd] [--update-results bench/RESULTS.md]
# api-service benchmark (ListPods(detail) latency at 10/100/500 pods from a C-core and a grpc-js client, service memory):
#   bash bench/run.sh --api-service [--calls 500] [--no-python] [--update-results bench/RESULTS.md]
# VM pod benchmark (stage1 kvm: launch → first output vs a bare qemu boot, host memory per VM pod):
#   bash bench/run.sh --kvm [--samples 12] [--warmup 2] [--update-results bench/RESULTS.md]
# exec/port-forward benchmark (kubectl exec end to end, at the node API, beside a bare crun exec; port-forward throughput):
#   bash bench/run.sh --exec [--samples 20] [--mib 100] [--rounds 3] [--port-forward-only] [--update-results bench/RESULTS.md]
# Watch fan-out benchmark (100 watch connections on pods while 100 pods are created; delivery latency, control plane RSS):
#   bash bench/run.sh --watch-fanout [--watchers 100] [--pods 100] [--update-results bench/RESULTS.md]
# Deployment scale benchmark (a Deployment 0 → 100 on one node beside the same pods applied one by one):
#   bash bench/run.sh --deployment [--pods 100] [--update-results bench/RESULTS.md]
# Pod spec benchmark (start with 3 volumes vs none; agent CPU for 100 pods with exec probes vs bare crun exec):
#   bash bench/run.sh --probes [--samples 15] [--pods 100] [--window 60] [--update-results bench/RESULTS.md]
# Autoscaling benchmark (load → HPA decision → new replica Ready; Pending pod → TriggeredScaleUp → new node Ready):
#   bash bench/run.sh --autoscaling [--update-results bench/RESULTS.md]
# Scale benchmark (control plane + 100 hollow nodes in one process, a 1000-replica Parallel StatefulSet; API latency from /metrics):
#   bash bench/run.sh --scale [--nodes 100] [--replicas 1000] [--store sqlite:PATH|etcd:URL] [--profile] [--update-results bench/RESULTS.md]
# Services benchmark (service proxy: one change and a full resync at 10/1000/5000 Services; cluster DNS against dnsmasq with dnsperf):
#   bash bench/run.sh --services [--sizes 10,1000,5000] [--changes 20] [--dns-seconds 5] [--dns-concurrency 32] [--dns-rate 10000] [--update-results bench/RESULTS.md]
# Docker node benchmark (issue 18: kubectl apply → Running / first log line on a docker node and an rkt node, beside docker run):
#   bash bench/run.sh --docker-node [--samples 15] [--warmup 2] [--base /path/to/built/checkout] [--update-results bench/RESULTS.md]
# Stats collection cost (agent CPU at 100 pods with stats every 10 s and the metrics API asked, vs stats off, and every second to magnify; rounds):
#   bash bench/run.sh --stats-cost [--pods 100] [--window 60] [--rounds 2] [--settle 25] [--update-results bench/RESULTS.md]
# Needs root (it boots a node sandbox: a real systemd in private namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
# tsc emits even when some file outside bench/ has a type error; the bench
# checks that the emitted CLI loads before it measures anything.
npx tsc -p tsconfig.json || echo "bench: tsc reported errors (see above); measuring what it emitted" >&2
# The first argument picks the benchmark; the rest go to it.
case "${1:-}" in
  --cluster | --cni | --kvm | --pull | --api-service | --exec | --watch-fanout | --deployment | --probes | --autoscaling | --scale | --services | --docker-node | --stats-cost) bench="${1#--}"; shift ;;
  *) bench=pod-start ;;
esac
# The api-service bench's C-core client (Debian's gRPC for Python): only this benchmark needs it.
if [ "$bench" = api-service ] && ! /usr/bin/python3 -c 'import grpc, grpc_tools' 2>/dev/null; then
  echo "bench: installing python3-grpcio python3-grpc-tools" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-grpcio python3-grpc-tools >/dev/null
fi
exec node --enable-source-maps "dist/bench/$bench.js" "$@"
