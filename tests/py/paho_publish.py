"""Publish one message with paho-mqtt (a client nobody on this project wrote).

usage: paho_publish.py HOST PORT VERSION(3|5) QOS TOPIC PAYLOAD
Exits non-zero if the message was not handed over (QoS 1: not acknowledged) within 10 s.
"""
import sys
import threading

import paho.mqtt.client as mqtt


def main() -> int:
    host, port, version, qos, topic, payload = sys.argv[1:7]
    protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-{version}-{qos}", protocol=protocol)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(host, int(port), keepalive=30)
    client.loop_start()
    # paho drops a QoS 0 publish made before its CONNACK has been processed.
    if not connected.wait(timeout=10):
        print("no CONNACK within 10 s", file=sys.stderr)
        return 1
    info = client.publish(topic, payload, qos=int(qos))
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        print(f"publish refused by the client: rc={info.rc}", file=sys.stderr)
        return 1
    info.wait_for_publish(timeout=10)
    ok = info.is_published()
    client.disconnect()
    client.loop_stop()
    if not ok:
        print(f"publish to {topic} not completed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
