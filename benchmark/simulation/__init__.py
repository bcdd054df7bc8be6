"""The simulation: the simulated expert (``expert``), the paper's scoring functions
(``scoring``), what a run records and the checks on every strategy's scores (``trajectory``),
the per-step reference loop (``reference``), the fast simulator (``simulator``), labels part-way
(``snapshots``), per-run metrics (``metrics``) and where a strategy's first picks fall
(``diagnostics``)."""
