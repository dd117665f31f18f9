"""`mnist-ann tune`: a hyperparameter search with Optuna over the same configs as `fit`.

mnist_ann.tune.space   the search space as the configs' `tune:` section states it, and each trial's config
mnist_ann.tune.study   the command: the study, its storage, its trials, its report
"""
