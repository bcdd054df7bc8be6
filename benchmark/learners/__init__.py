"""Built-in learners, one file each, found by path like every other plugin folder.

A learner file holds one :class:`benchmark.plugins.Learner` subclass; image learners build on
:class:`benchmark.posteriors.crossfit.CrossFitLearner`. Files starting with ``_`` are private helpers.
"""
