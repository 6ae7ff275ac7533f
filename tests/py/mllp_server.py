"""The hospital's side of the HL7 interfaces in the system tests: an MLLP server built with
PyPI's `hl7` package (hl7.mllp), playing the interface engine (PCD-01) or the alarm manager
(PCD-04). It parses every message with the same package, writes one JSON line per message
to --out (flushed), and answers with the package's ACK (AA; AE for a bed named with --refuse).

Usage: mllp_server.py --port-file F --out F [--port P] [--refuse BED]
The port it listens on (127.0.0.1; 0 = the OS picks) is written to --port-file once it
listens, so a restarted server can take the same port.
"""

import argparse
import asyncio
import json

import hl7
from hl7.mllp import start_hl7_server


def fields(msg):
    seg = lambda name: msg.segment(name) if any(str(s[0]) == name for s in msg) else None
    msh, pid, pv1, obr = seg("MSH"), seg("PID"), seg("PV1"), seg("OBR")
    obx = [s for s in msg if str(s[0]) == "OBX"]

    def f(s, n, c=None):
        try:
            v = s[n] if c is None else s[n][0][c]
            return msg.unescape(str(v))
        except (IndexError, TypeError):
            return ""

    return {
        "control_id": str(msh[10]),
        "type": f(msh, 9),
        "profile": f(msh, 21),
        "mrn": f(pid, 3, 0) if pid is not None and len(pid) > 3 else "",
        "family": f(pid, 5, 0) if pid is not None and len(pid) > 5 else "",
        "bed": f(pv1, 3, 2) if pv1 is not None and len(pv1) > 3 else "",
        "alarm_id": f(obr, 2, 0) if obr is not None and len(obr) > 2 else "",
        "obx": [
            {
                "type": f(o, 2),
                "code": f(o, 3, 0),
                "name": f(o, 3, 1),
                "sub": f(o, 4),
                "value": f(o, 5),
                "unit": f(o, 6, 0) if len(o) > 6 else "",
                "flags": f(o, 8) if len(o) > 8 else "",
                "user": f(o, 16) if len(o) > 16 else "",
                "device": f(o, 18, 0) if len(o) > 18 else "",
            }
            for o in obx
        ],
    }


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--refuse", default="")
    args = ap.parse_args()
    out = open(args.out, "a", encoding="utf-8")

    async def on_client(reader, writer):
        try:
            while not writer.is_closing():
                msg = await reader.readmessage()
                try:
                    record = fields(msg)
                except Exception as e:  # a message this test cannot read: say so, answer AR
                    record = {"control_id": str(msg.segment("MSH")[10]), "error": repr(e), "bed": ""}
                    code = "AR"
                else:
                    code = "AE" if args.refuse and record["bed"] == args.refuse else "AA"
                record["answered"] = code
                out.write(json.dumps(record) + "\n")
                out.flush()
                writer.writemessage(msg.create_ack(ack_code=code))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await start_hl7_server(on_client, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(port))
    import os

    os.replace(args.port_file + ".tmp", args.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
