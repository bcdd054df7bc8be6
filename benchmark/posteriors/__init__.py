"""Posteriors: a user's posteriors file and the checks any posteriors pass (``files``), the
on-disk cache of learner outputs (``cache``, one entry in ``cache_entry``), and what learners
build on: cross-fitting (``crossfit``), stratified folds (``folds``) and hyper-parameters as a
frozen dataclass (``learner_config``)."""

from benchmark.posteriors.files import PosteriorsError, check_posteriors_array, load_posteriors_file

__all__ = ["PosteriorsError", "check_posteriors_array", "load_posteriors_file"]
