"""
voiced's proving ground: benchmarks against the official SDK, a fault matrix, a soak.

    python -m bench [--json] [--quick]          # the figures of issue 7, one table
    python -m bench.faults [--markdown]         # the fault matrix (also tests/proving)
    python -m bench.soak [--hours 24] [--json]  # accelerated device-days, flat resources
    python bench/resampler.py [--json]          # the resampler against soxr (issue 4)

Every figure is measured on loopback against the local Live server
(daemon.liveserver), in child processes where CPU or memory is the figure, so
that the server's own work is never counted. Each figure carries a "how".

The rigs the tests share (the fault rig, the process rig, the proxy, the paced devices,
the private PulseAudio) are in ``testing/``: deleting a benchmark never breaks the suite.
"""
