"""What cleaning buys downstream: models re-trained on the labels part-way through the budget
(``training``, which runs the stage) and model selection with noisy against cleaned validation
labels (``selection``); the models (``models``), their cached features (``features``) and fits
(``fits``); their tables and pages (``report``) and figures (``figures``)."""
