"""Local stand-ins for production services: the demo, the tests, the benchmarks and the
campaigns run the real worker against these on loopback.

- `broker`: Tansu, a Kafka-protocol broker from a PyPI wheel, and readers of its topics;
- `faulty_proxy`: an HTTP proxy that makes a real S3 endpoint (moto) fail, stall or deny;
- `processes`: `skyra-stream <command>` as a child configured by SKYRA_* variables;
- `demo`: `skyra-stream demo`, the whole product on a laptop.

Nothing in the worker imports this package; it needs the `devstack` extra.
"""
