"""Speed benchmarks (``make perf``): the simulator against the reference loop
(:mod:`benchmark.perf.simulator`) and the learners' throughput (:mod:`benchmark.perf.learners`)."""
