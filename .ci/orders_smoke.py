"""The main job as CI runs it: start the orders service on a free port
with its admin listener on another, place and read an order over HTTP,
read the DB stage's figures from the admin listener (the public one has
no debug views), stop it with SIGTERM and check that it exits 0. Then
again with its log pipe closed by the reader (stderr writes fail): an
order placed and SIGTERM still stop it, exit status 0. Usage: python3
.ci/orders_smoke.py PATH_TO_ORDERS_BINARY"""

import http.client
import json
import signal
import subprocess
import sys
import tempfile

binary = sys.argv[1]
with tempfile.TemporaryDirectory() as data:
    server = subprocess.Popen(
        [binary, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data", data],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = server.stdout.readline().strip()
        print(first)
        assert first.startswith("listening on "), first
        second = server.stdout.readline().strip()
        print(second)
        assert second.startswith("admin listening on "), second

        def connect(line):
            host, port = line.split()[-1].rsplit(":", 1)
            return http.client.HTTPConnection(host, int(port), timeout=20)

        conn = connect(first)
        conn.request("POST", "/orders", body=json.dumps({"item": "tea", "quantity": 2}))
        placed = conn.getresponse()
        order = json.loads(placed.read())
        assert placed.status == 201, (placed.status, order)
        conn.request("GET", "/orders/%d" % order["id"])
        fetched = conn.getresponse()
        assert fetched.status == 200 and json.loads(fetched.read()) == order
        conn.request("GET", "/debug/stages")
        hidden = conn.getresponse()
        hidden.read()
        assert hidden.status == 404, "debug view on the public listener: %d" % hidden.status
        conn.close()
        admin = connect(second)
        admin.request("GET", "/debug/stages")
        stages = admin.getresponse()
        assert stages.status == 200, stages.status
        print(stages.read().decode().strip())
        admin.close()
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=30)
        assert status == 0, "exit status %d after SIGTERM" % status
        print("placed order %d, stopped cleanly" % order["id"])
    finally:
        if server.poll() is None:
            server.kill()

# A closed log pipe: the log lines are lost, the service goes on and stops.
with tempfile.TemporaryDirectory() as data:
    server = subprocess.Popen(
        [binary, "--addr", "127.0.0.1:0", "--data", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = server.stdout.readline().strip()
        assert first.startswith("listening on "), first
        server.stderr.close()
        host, port = first.split()[-1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=20)
        # Logged (an order placed), into the closed pipe.
        conn.request("POST", "/orders", body=json.dumps({"item": "tea", "quantity": 1}))
        placed = conn.getresponse()
        placed.read()
        assert placed.status == 201, placed.status
        conn.close()
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=30)
        assert status == 0, "exit status %d after SIGTERM with stderr closed" % status
        print("with its log pipe closed: served, stopped cleanly")
    finally:
        if server.poll() is None:
            server.kill()
