"""Publish one message with paho-mqtt (a client nobody on this project wrote).

usage: paho_publish.py HOST PORT VERSION(3|5) QOS TOPIC PAYLOAD
Exits non-zero if the message was not handed over (QoS 1: not acknowledged) within 10 s;
exits 2, printing "refused 0xNN", if an MQTT 5 broker acknowledged it with a failure reason.
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
    reasons = []
    client.on_publish = lambda _c, _u, _mid, reason_code, _p: reasons.append(reason_code)
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
    if reasons and reasons[0].is_failure:
        print(f"refused 0x{reasons[0].value:02x}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
