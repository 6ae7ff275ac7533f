"""Sends HL7 v2 messages to the station over MLLP with PyPI's `hl7` package (hl7.client),
as a hospital's ADT system would, and prints each answer as a JSON line.

Usage: hl7_send.py HOST PORT [--tls-ca CA.pem] < messages   (messages separated by blank
lines; segments one per line, sent with CR as HL7 wants). A line "RAW:<text>" is sent framed
as it is (bad input). With --tls-ca the connection is TLS (the package's client has no TLS:
the same MLLP framing over Python's ssl, verified against the CA).
"""

import json
import socket
import ssl
import sys

import hl7
from hl7.client import MLLPClient


class TlsClient:
    """MLLP over TLS, answering like MLLPClient.send_message (the frame's content, bytes)."""

    def __init__(self, host, port, ca):
        ctx = ssl.create_default_context(cafile=ca)
        self.sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname=host)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send_message(self, text):
        self.sock.sendall(b"\x0b" + text.encode("utf-8") + b"\x1c\x0d")
        buf = b""
        while not buf.endswith(b"\x1c\x0d"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before answering")
            buf += chunk
        return buf[buf.index(b"\x0b") + 1 : -2]


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    ca = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--tls-ca" else None
    blocks = [b.strip() for b in sys.stdin.read().split("\n\n") if b.strip()]
    with (TlsClient(host, port, ca) if ca else MLLPClient(host, port)) as client:
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
