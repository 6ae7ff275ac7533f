"""A persistent MQTT 5 subscriber with paho-mqtt (a client nobody on this project wrote), for
the broker's crash drill.

usage: paho_drill.py HOST PORT subscribe CLIENT_ID FILTER
       paho_drill.py HOST PORT collect CLIENT_ID COUNT IDLE_SECONDS

subscribe: connects with clean start off and a one-hour session expiry, subscribes FILTER at
QoS 2, disconnects. collect: reconnects to that session, receives until COUNT messages have
arrived or nothing came for IDLE_SECONDS, and prints them as a JSON array of
{"topic", "payload", "qos"}. paho acknowledges each message (PUBACK, or PUBREC/PUBCOMP) and
hands a QoS 2 message to on_message once, whatever the broker resends.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes


def connect(host, port, client_id):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    ready = threading.Event()
    state = {}

    def on_connect(_c, _u, _flags, rc, _p):
        state["rc"] = rc
        state["present"] = _flags.session_present
        ready.set()

    c.on_connect = on_connect
    return c, ready, state, props


def main() -> int:
    host, port, mode, client_id = sys.argv[1:5]
    c, ready, state, props = connect(host, int(port), client_id)
    got = []
    last = [time.monotonic()]
    lock = threading.Lock()

    def on_message(_c, _u, m):
        with lock:
            got.append({"topic": m.topic, "payload": m.payload.decode(), "qos": m.qos})
            last[0] = time.monotonic()

    c.on_message = on_message
    c.connect(host, int(port), keepalive=30, clean_start=False, properties=props)
    c.loop_start()
    if not ready.wait(timeout=15) or state.get("rc") != 0:
        print(f"no successful CONNACK: {state}", file=sys.stderr)
        return 1
    if mode == "subscribe":
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.subscribe(sys.argv[5], qos=2)
        if not subscribed.wait(timeout=10):
            print("no SUBACK", file=sys.stderr)
            return 1
    else:
        count, idle = int(sys.argv[5]), float(sys.argv[6])
        if not state.get("present"):
            print("session not present after restart", file=sys.stderr)
            return 1
        while True:
            time.sleep(0.1)
            with lock:
                if len(got) >= count or time.monotonic() - last[0] > idle:
                    break
        # Let the last acknowledgements leave, then see whether anything more arrives.
        time.sleep(1.0)
        print(json.dumps(got))
    c.disconnect()
    c.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
