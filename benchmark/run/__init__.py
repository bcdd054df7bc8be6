"""Running a benchmark: a grid of cells in parallel (``runner``) on local processes or a
cluster (``engines``); the default suite (``suite``)."""
