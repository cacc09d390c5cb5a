"""pywsk's benchmarks: pywsk against C, selectors, asyncio, uvloop and trio on loopback TCP.

Run ``python -m benchmarks`` (add ``--quick`` for a smoke run); see :mod:`benchmarks.run`
for the driver, :mod:`benchmarks.common` for the workloads and the command line every
implementation shares, :mod:`benchmarks.scaling` for the idle-connection, heap and
FIN-ACK latency measurements, and ``docs/performance.md`` for the results.
"""
