"""The official Python client (Debian's python3-kubernetes) against the control plane.

Run by test/client-conformance.test.ts: python3 python_conformance.py KUBECONFIG NAMESPACE.
Each check prints one line `ok <name> <detail>`; any failure raises, and the process exits non-zero
with the traceback on stderr.
"""
import sys
import threading

import yaml

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

kubeconfig, ns = sys.argv[1], sys.argv[2]
config.load_kube_config(kubeconfig)
api = client.ApiClient()
v1 = client.CoreV1Api(api)


def pod(name, labels=None):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"suite": "python"}},
        "spec": {"containers": [{"name": "main", "image": "localhost/busybox:latest", "command": ["sleep", "1000"]}]},
    }


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name} failed: {detail}")
    print(f"ok {name} {detail}", flush=True)


# create and list
for i in range(5):
    v1.create_namespaced_pod(ns, pod(f"py{i}"))
pods = v1.list_namespaced_pod(ns, label_selector="suite=python")
check("list", sorted(p.metadata.name for p in pods.items) == [f"py{i}" for i in range(5)], str(len(pods.items)))

# pagination: limit and _continue, one page at a time
names, token, pages = [], None, 0
while True:
    page = v1.list_namespaced_pod(ns, label_selector="suite=python", limit=2, _continue=token)
    pages += 1
    names += [p.metadata.name for p in page.items]
    token = page.metadata._continue
    if not token:
        break
check("pagination", pages == 3 and names == [f"py{i}" for i in range(5)], f"{pages} pages")

# watch without resourceVersion: the current objects as ADDED
w = watch.Watch()
seen = []
for ev in w.stream(v1.list_namespaced_pod, ns, label_selector="suite=python", timeout_seconds=5):
    seen.append(ev["type"] + ":" + ev["object"].metadata.name)
    if len(seen) == 5:
        w.stop()
check("watch-initial", sorted(seen) == [f"ADDED:py{i}" for i in range(5)], " ".join(seen))

# watch from a list's resourceVersion: only what happens after it
rv = v1.list_namespaced_pod(ns).metadata.resource_version


def later():
    v1.create_namespaced_pod(ns, pod("py-late"))
    v1.delete_namespaced_pod("py-late", ns, grace_period_seconds=0)


threading.Timer(0.5, later).start()
w = watch.Watch()
events = []
for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=10):
    events.append(ev["type"] + ":" + ev["object"].metadata.name)
    if ev["type"] == "DELETED":
        w.stop()
check("watch-from-resourceVersion", events[0] == "ADDED:py-late" and events[-1] == "DELETED:py-late", " ".join(events))

# patch types: JSON patch (a list), strategic merge (a dict), merge patch (asked for by content type)
p = v1.patch_namespaced_pod("py0", ns, [{"op": "add", "path": "/metadata/labels/json", "value": "patch"}])
check("patch-json", p.metadata.labels.get("json") == "patch")
p = v1.patch_namespaced_pod("py0", ns, {"spec": {"containers": [{"name": "main", "image": "localhost/busybox:1"}]}})
check("patch-strategic", len(p.spec.containers) == 1 and p.spec.containers[0].image == "localhost/busybox:1")
p = api.call_api(
    f"/api/v1/namespaces/{ns}/pods/py0", "PATCH", header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
    body={"metadata": {"labels": {"merge": "patch", "json": None}}}, response_type="V1Pod", auth_settings=["BearerToken"], _return_http_data_only=True)
check("patch-merge", p.metadata.labels.get("merge") == "patch" and "json" not in p.metadata.labels)

# server-side apply through the dynamic client
dyn = DynamicClient(api)
cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "py-applied", "namespace": ns}, "data": {"a": "1"}}
# This client version sends a dict only as JSON content types, so the applied configuration goes as YAML text.
applied = cms.server_side_apply(body=yaml.safe_dump(cm), name="py-applied", namespace=ns, field_manager="python-suite")
check("server-side-apply", applied.data.a == "1" and applied.metadata.managedFields[0].manager == "python-suite")

# errors are ApiException with kube-apiserver's status codes
def status_of(fn):
    try:
        fn()
    except ApiException as e:
        return e.status
    return 200


check("error-404", status_of(lambda: v1.read_namespaced_pod("nope", ns)) == 404)
check("error-409", status_of(lambda: v1.create_namespaced_pod(ns, pod("py0"))) == 409)
check("error-422", status_of(lambda: v1.create_namespaced_pod(ns, pod("Not_Valid"))) == 422)
check("error-400", status_of(lambda: v1.list_namespaced_pod(ns, label_selector="a in (")) == 400)
