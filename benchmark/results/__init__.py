"""Results: the schema of the result tables and their I/O (``tables``), aggregation over seeds
(``leaderboard``, DataFrames in and out; ``learner_summary``) and the figures (``plots``)."""
