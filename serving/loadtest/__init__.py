"""Load tests of served models: open-loop p50..p99.9 against p99 targets, capacity at the SLO.

Modules, bottom up: ``requests`` (real ranking requests from a data file), ``wire`` (requests
serialised once, the gRPC data path), ``open_loop`` / ``closed_loop`` (the generators),
``server_stats`` (liveness, model checks, Triton's statistics diff), ``stats`` (percentiles,
results JSON/CSV), ``runner`` (one measurement end to end), ``slo`` (checks, capacity search),
``plots``, ``report`` (the output folder) and ``perf_analyzer`` (cross-check with Triton's tool).
The command line is ``recdistill loadtest`` (:mod:`serving.commands.loadtest`).
"""
