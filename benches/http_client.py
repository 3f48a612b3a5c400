"""A sequential keep-alive HTTP/1.1 client for benches/http_instructions.sh:
sends `GET /` N times on one connection, reading each response (by its
Content-Length) before the next request.

Usage: python3 benches/http_client.py HOST:PORT N
"""

import socket
import sys


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    count = int(sys.argv[2])
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    with socket.create_connection((host, int(port))) as conn:
        pending = b""
        for _ in range(count):
            conn.sendall(request)
            while True:
                end = pending.find(b"\r\n\r\n")
                if end >= 0:
                    length = 0
                    for line in pending[:end].split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if len(pending) >= end + 4 + length:
                        pending = pending[end + 4 + length :]
                        break
                data = conn.recv(65536)
                if not data:
                    sys.exit("the server closed the connection")
                pending += data


if __name__ == "__main__":
    main()
