"""The main job as CI runs it: start the orders service on a free port,
place and read an order over HTTP, stop it with SIGTERM and check that it
exits 0. Usage: python3 .ci/orders_smoke.py PATH_TO_ORDERS_BINARY"""

import http.client
import json
import signal
import subprocess
import sys
import tempfile

binary = sys.argv[1]
with tempfile.TemporaryDirectory() as data:
    server = subprocess.Popen(
        [binary, "--addr", "127.0.0.1:0", "--data", data],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = server.stdout.readline().strip()
        print(first)
        assert first.startswith("listening on "), first
        host, port = first.split()[-1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=20)
        conn.request("POST", "/orders", body=json.dumps({"item": "tea", "quantity": 2}))
        placed = conn.getresponse()
        order = json.loads(placed.read())
        assert placed.status == 201, (placed.status, order)
        conn.request("GET", "/orders/%d" % order["id"])
        fetched = conn.getresponse()
        assert fetched.status == 200 and json.loads(fetched.read()) == order
        conn.request("GET", "/debug/stages")
        stages = conn.getresponse()
        print(stages.read().decode().strip())
        conn.close()
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=30)
        assert status == 0, "exit status %d after SIGTERM" % status
        print("placed order %d, stopped cleanly" % order["id"])
    finally:
        if server.poll() is None:
            server.kill()
