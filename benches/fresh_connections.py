"""Times GET /health from Python's http.client, the way many scripts and
simple app clients call an API: a new TCP (+TLS) connection per request, or
one kept-alive connection. Prints one JSON object of millisecond lists.

usage: fresh_connections.py HTTPS_PORT HTTP_PORT CERT REQUESTS
"""
import http.client
import json
import ssl
import sys
import time

https_port, http_port, cert, requests = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])


def context(version):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def fresh(make):
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        conn = make()
        conn.request("GET", "/health")
        answer = conn.getresponse()
        answer.read()
        conn.close()
        assert answer.status == 200, answer.status
        times.append((time.perf_counter() - started) * 1000)
    return times


def kept_alive(conn):
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        conn.request("GET", "/health")
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return times


tls13, tls12 = context(ssl.TLSVersion.TLSv1_3), context(ssl.TLSVersion.TLSv1_2)
print(json.dumps({
    "tls13": fresh(lambda: http.client.HTTPSConnection("localhost", https_port, context=tls13)),
    "tls12": fresh(lambda: http.client.HTTPSConnection("localhost", https_port, context=tls12)),
    "http": fresh(lambda: http.client.HTTPConnection("127.0.0.1", http_port)),
    "kept_alive": kept_alive(http.client.HTTPSConnection("localhost", https_port, context=tls13)),
}))
