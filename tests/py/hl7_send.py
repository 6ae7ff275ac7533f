"""Sends HL7 v2 messages to the station over MLLP with PyPI's `hl7` package (hl7.client),
as a hospital's ADT system would, and prints each answer as a JSON line.

Usage: hl7_send.py HOST PORT < messages   (messages separated by blank lines; segments one
per line, sent with CR as HL7 wants). A line "RAW:<text>" is sent framed as it is (bad input).
"""

import json
import sys

import hl7
from hl7.client import MLLPClient


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    blocks = [b.strip() for b in sys.stdin.read().split("\n\n") if b.strip()]
    with MLLPClient(host, port) as client:
        for block in blocks:
            if block.startswith("RAW:"):
                text = block[4:]
            else:
                text = "\r".join(line.strip() for line in block.splitlines())
            answer = client.send_message(text)
            # The package strips the MLLP frame; parse the ACK with the same package.
            msg = hl7.parse(answer.decode("utf-8"))
            msa = msg.segment("MSA")
            err = msg.segments("ERR")[0] if any(s[0][0] == "ERR" for s in msg) else None
            print(json.dumps({
                "code": str(msa[1]),
                "control_id": str(msa[2]),
                # The station escapes ^ | & ~ \ in text; the package undoes it.
                "text": msg.unescape(str(msa[3])) if len(msa) > 3 else "",
                "err": msg.unescape(str(err[8])) if err is not None and len(err) > 8 else "",
                "ack_type": str(msg.segment("MSH")[9]),
            }), flush=True)


if __name__ == "__main__":
    main()
