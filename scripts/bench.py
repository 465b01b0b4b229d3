#!/usr/bin/env python3
"""Helpers for scripts/bench.sh (standard library only).

  bench.py requests FILE            apiserver_request_total now (kubectl get --raw /metrics) → FILE (JSON)
  bench.py delta BEFORE AFTER N     requests between two snapshots by verb (dry runs apart), less the
                                    benchmark's own: the N DittoServers created and the /metrics reads
  bench.py wait-objects NS N SECS SINCE  polls etcd (not the apiserver) until NS holds N StatefulSets;
                                    prints the seconds since the Unix time SINCE
  bench.py wait-status NS N SECS SINCE   polls etcd until N DittoServers of NS report InSync; same
  bench.py wait-ready NS N SECS SINCE    polls etcd until N DittoServers of NS count their pod Ready; same
  bench.py wait-runtime NS N SECS SINCE  polls etcd until N DittoServers of NS say their runtime
                                    step finished a try at the API (Serving past PodNotReady, Connecting); same
  bench.py silent-api PORT          listens on 127.0.0.1:PORT, accepts, never answers (runs until killed)
  bench.py operator-requests URL    the operator's own API server requests by method (its /metrics)
  bench.py process PID              peak RSS (MiB) and CPU seconds of a process
  bench.py events NS REPORTER       Events of NS by reporting component and reason (JSON), and how
                                    many are not REPORTER's (the apiserver's own, say)
  bench.py plot RESULTS SVG         cost against N from the JSON lines bench.sh appended to RESULTS

The etcd polls use etcd's HTTP gateway ($DITTOFS_ETCD_URL), so waiting costs the apiserver nothing.
"""

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.request


def metrics_snapshot(path):
    text = subprocess.run(["kubectl", "get", "--raw", "/metrics"], check=True, capture_output=True, text=True).stdout
    counts = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}")]))
        value = float(line.rsplit(" ", 1)[1])
        key = "|".join([labels.get("verb", ""), labels.get("dry_run", ""), labels.get("resource", ""),
                        labels.get("subresource", "")])
        counts[key] = counts.get(key, 0) + value
    with open(path, "w") as f:
        json.dump(counts, f)


def delta(before_path, after_path, created):
    before, after = json.load(open(before_path)), json.load(open(after_path))
    by_verb, by_resource, total = {}, {}, 0
    for key, value in after.items():
        n = int(round(value - before.get(key, 0)))
        if n <= 0:
            continue
        verb, dry_run, resource, subresource = key.split("|")
        if resource == "":  # /metrics and other non-resource URLs: the benchmark's own reads
            continue
        if resource == "dittoservers" and subresource == "" and verb in ("POST", "CREATE"):
            n -= created  # the DittoServers the benchmark created
            if n <= 0:
                continue
        # The apiserver's own: its identity lease (kube-system, renewed every 10 s) and the
        # IPAddress objects it makes when it allocates a Service's ClusterIP.
        if (resource == "leases" and verb == "PUT") or resource == "ipaddresses":
            continue
        label = verb + (" (dry run)" if dry_run else "")
        by_verb[label] = by_verb.get(label, 0) + n
        what = f"{verb} {resource}" + (f"/{subresource}" if subresource else "") + (" (dry run)" if dry_run else "")
        by_resource[what] = by_resource.get(what, 0) + n
        total += n
    print(json.dumps({"total": total, "by_verb": dict(sorted(by_verb.items())),
                      "by_resource": dict(sorted(by_resource.items()))}))


def etcd_range(prefix, keys_only=False, count_only=False):
    def b64(s):
        return base64.b64encode(s.encode()).decode()
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = {"key": b64(prefix), "range_end": b64(end), "keys_only": keys_only, "count_only": count_only}
    url = os.environ["DITTOFS_ETCD_URL"] + "/v3/kv/range"
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def wait(predicate, timeout, since):
    """Polls until predicate holds; prints the seconds since the Unix time `since`."""
    while time.time() - since < timeout:
        if predicate():
            print(f"{time.time() - since:.3f}")
            return
        time.sleep(0.02)
    sys.exit(f"timed out after {timeout}s")


def statefulsets(namespace):
    return int(etcd_range(f"/registry/statefulsets/{namespace}/", count_only=True).get("count", 0))


def reporting(namespace):
    found = etcd_range(f"/registry/dittofs.dittofs.com/dittoservers/{namespace}/")
    n = 0
    for kv in found.get("kvs", []):
        server = json.loads(base64.b64decode(kv["value"]))
        conditions = server.get("status", {}).get("conditions", [])
        n += any(c.get("type") == "InSync" for c in conditions)
    return n


def servers(namespace):
    found = etcd_range(f"/registry/dittofs.dittofs.com/dittoservers/{namespace}/")
    return [json.loads(base64.b64decode(kv["value"])) for kv in found.get("kvs", [])]


def pods_ready(namespace):
    """DittoServers whose status counts their pod Ready."""
    return sum((s.get("status", {}).get("readyReplicas") or 0) >= 1 for s in servers(namespace))


def tried_api(namespace):
    """DittoServers whose runtime step has finished a try at their API: Serving is past
    PodNotReady and Connecting."""
    return sum(
        any(c.get("type") == "Serving" and c.get("reason") not in ("PodNotReady", "Connecting")
            for c in s.get("status", {}).get("conditions", []))
        for s in servers(namespace))


def silent_api(port):
    """An API that accepts every connection and never answers (the worst case for the runtime
    step: each request waits for its whole deadline)."""
    import asyncio

    async def hold(reader, writer):
        while await reader.read(65536):
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(hold, "127.0.0.1", int(port), backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def operator_requests(url):
    """The operator's own API server requests by method, from its /metrics."""
    text = urllib.request.urlopen(url).read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("dittofs_operator_kube_requests_total{"):
            method = line.split('method="', 1)[1].split('"', 1)[0]
            counts[method] = int(float(line.rsplit(" ", 1)[1]))
    print(json.dumps(counts))


def process(pid):
    # Peak RSS, and what is resident now split into the heap and such (anonymous) and the
    # binary's own pages (file: its code, read from the executable, shared and reclaimable).
    kib = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            kib[key] = int(value.split()[0])
    rss = kib.get("VmHWM", 0) / 1024
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    print(json.dumps({"peak_rss_mib": round(rss, 1), "cpu_seconds": round(cpu, 2),
                      "rss_anon_mib": round(kib.get("RssAnon", 0) / 1024, 1),
                      "rss_file_mib": round(kib.get("RssFile", 0) / 1024, 1)}))


def plot(results_path, svg_path):
    rows = [json.loads(line) for line in open(results_path) if line.strip()]
    rows.sort(key=lambda r: r["n"])
    series = [
        ("convergence (s)", [r["objects_seconds"] for r in rows], "#1f77b4"),
        ("after the creates (s)", [r.get("objects_after_creates_seconds", r["objects_seconds"]) for r in rows], "#9467bd"),
        ("floor (s)", [r["floor_seconds"] for r in rows], "#7f7f7f"),
        ("requests / 100", [r["requests"]["total"] / 100 for r in rows], "#d62728"),
        ("peak RSS (MiB)", [r["peak_rss_mib"] for r in rows], "#2ca02c"),
    ]
    width, height, left, bottom, top, right = 640, 360, 60, 40, 20, 170
    xs = [r["n"] for r in rows]
    ymax = max(max(v) for _, v, _ in series) * 1.1 or 1
    xmax = max(xs) * 1.05

    def px(x):
        return left + (width - left - right) * x / xmax

    def py(y):
        return height - bottom - (height - bottom - top) * y / ymax

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<line x1="{left}" y1="{py(0)}" x2="{width - right}" y2="{py(0)}" stroke="black"/>',
           f'<line x1="{left}" y1="{py(0)}" x2="{left}" y2="{top}" stroke="black"/>',
           f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">DittoServers (N)</text>']
    for x in xs:
        out.append(f'<text x="{px(x)}" y="{py(0) + 15}" text-anchor="middle">{x}</text>')
    for i in range(5):
        y = ymax * i / 4
        out.append(f'<text x="{left - 5}" y="{py(y) + 4}" text-anchor="end">{y:.0f}</text>')
    for i, (name, values, color) in enumerate(series):
        points = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in zip(xs, values))
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, v in zip(xs, values):
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="{color}"/>')
        out.append(f'<text x="{width - right + 10}" y="{top + 20 + 18 * i}" fill="{color}">{name}</text>')
    out.append("</svg>")
    with open(svg_path, "w") as f:
        f.write("\n".join(out) + "\n")


def events(namespace, reporter):
    items = json.loads(subprocess.check_output(
        ["kubectl", "get", "events.events.k8s.io", "-n", namespace, "-o", "json"]))["items"]
    counts = {}
    for e in items:
        who = e.get("reportingController") or (e.get("deprecatedSource") or {}).get("component") or "?"
        key = f"{who} {e.get('reason', '?')}"
        counts[key] = counts.get(key, 0) + 1
    foreign = sum(n for key, n in counts.items() if not key.startswith(reporter + " "))
    print(json.dumps({"by_reporter_reason": dict(sorted(counts.items())), "foreign": foreign}))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "requests":
        metrics_snapshot(args[0])
    elif command == "delta":
        delta(args[0], args[1], int(args[2]))
    elif command == "wait-objects":
        wait(lambda: statefulsets(args[0]) >= int(args[1]), float(args[2]), float(args[3]))
    elif command == "wait-status":
        wait(lambda: reporting(args[0]) >= int(args[1]), float(args[2]), float(args[3]))
    elif command == "wait-ready":
        wait(lambda: pods_ready(args[0]) >= int(args[1]), float(args[2]), float(args[3]))
    elif command == "wait-runtime":
        wait(lambda: tried_api(args[0]) >= int(args[1]), float(args[2]), float(args[3]))
    elif command == "silent-api":
        silent_api(args[0])
    elif command == "operator-requests":
        operator_requests(args[0])
    elif command == "process":
        process(args[0])
    elif command == "events":
        events(args[0], args[1])
    elif command == "plot":
        plot(args[0], args[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
