"""The twisted.web peer of the HTTP benchmark: `GET /` answered with the
same small text body as examples/orders.rs and examples/hyper_hello.rs,
keep-alive (twisted.web's default for HTTP/1.1), one reactor thread.

Usage: python twisted_hello.py [PORT]   (0, the default, picks a free port)
Prints `listening on 127.0.0.1:PORT` first. See docs/benchmarks.md,
"HTTP: hello world".
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.web import resource, server

BODY = b"hello from milieu\n"


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return BODY


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    site = server.Site(Hello())
    site.displayTracebacks = False
    endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")

    def listening(p):
        print("listening on 127.0.0.1:%d" % p.getHost().port, flush=True)

    endpoint.listen(site).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main()
