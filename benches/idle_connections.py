"""Holds idle HTTPS connections to latchd, as a crowd of kept-alive
clients (or a connection flood) does: opens N TLS 1.3 connections, asks
each for /health once, prints "held N" and keeps them all open until its
standard input closes.

usage: idle_connections.py HTTPS_PORT CERT N
"""
import http.client
import resource
import ssl
import sys

port, cert, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
# Each connection is a file descriptor here too.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 256)), hard))
ctx = ssl.create_default_context(cafile=cert)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
held = []
for _ in range(count):
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    conn.request("GET", "/health")
    conn.getresponse().read()
    held.append(conn)
print(f"held {len(held)}", flush=True)
sys.stdin.read()
