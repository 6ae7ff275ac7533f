#!/usr/bin/env python3
"""QoS 1 acknowledgement latency, publish to PUBACK, as a device sees it.

Runs a headless station (its embedded broker; ingest confirms each QoS 1 message only once
the store writer has committed it) and Debian's Mosquitto (in memory, its default), each on a
loopback port the OS picks, and has one paho-mqtt client publish the same paced QoS 1 vitals
to each in turn. Prints a Markdown table (p50, p90, p99, max) and the ratios to Mosquitto.

    scripts/ack-latency.py --station target/release/wardwatch --count 600 --rate 20
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port}")


def measure(port, count, rate, device):
    """Publishes `count` QoS 1 vitals at `rate`/s; returns each one's PUBACK latency (ms)."""
    sent, acked = {}, {}
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(100)

    def on_publish(client, userdata, mid, reason_code, properties):
        acked[mid] = time.perf_counter()
        if len(acked) == count:
            done.set()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    topic = f"ward/v1/dev/{device}/vitals"
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        body = json.dumps({"ts": int(time.time() * 1000), "obs": [{"code": 147842, "value": 60 + i % 40, "unit": 264864}]})
        t = time.perf_counter()
        info = c.publish(topic, body, qos=1)
        sent[info.mid] = t
    if not done.wait(60):
        sys.exit(f"only {len(acked)} of {count} acknowledged")
    c.loop_stop()
    c.disconnect()
    return sorted((acked[m] - sent[m]) * 1000 for m in sent)


def pct(v, p):
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--station", required=True, help="the wardwatch console binary")
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--out", help="write the table between the bench:ack-latency markers of this file")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        cfg = os.path.join(d, "ward.toml")
        with open(cfg, "w") as f:
            f.write('[[beds]]\nid = "bed-01"\nlabel = "Bed 1"\ndevice = "lat-01"\n')
        st = subprocess.Popen(
            [a.station, "run", "--config", cfg, "--data-dir", os.path.join(d, "data"),
             "--listen", f"127.0.0.1:{port}", "--allow-anonymous", "--no-sentinel",
             "--summary-every", "3600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, st, "station")
            rows.append(("station (ack after its store commits)", measure(port, a.count, a.rate, "lat-01")))
        finally:
            st.terminate()
            st.wait()
        mport = free_port()
        mconf = os.path.join(d, "mosquitto.conf")
        with open(mconf, "w") as f:
            f.write(f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        mq = subprocess.Popen(["mosquitto", "-c", mconf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(mport, mq, "mosquitto")
            rows.append(("mosquitto (in memory)", measure(mport, a.count, a.rate, "lat-01")))
        finally:
            mq.terminate()
            mq.wait()
    base = pct(rows[-1][1], 0.5)
    lines = ["| broker | QoS 1 PUBACKs | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | p50 ratio to Mosquitto |",
             "|---|---|---|---|---|---|---|"]
    for name, v in rows:
        lines.append(f"| {name} | {len(v)} at {a.rate:g}/s | {pct(v, .5):.2f} | {pct(v, .9):.2f} | {pct(v, .99):.2f} | {v[-1]:.2f} | {pct(v, .5) / base:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out) as f:
            doc = f.read()
        o, c = "<!-- bench:ack-latency -->", "<!-- /bench:ack-latency -->"
        i, j = doc.index(o), doc.index(c)
        with open(a.out, "w") as f:
            f.write(doc[:i] + o + "\n" + text + doc[j:])
        print(f"written to {a.out}")


if __name__ == "__main__":
    main()
