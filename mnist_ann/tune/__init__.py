"""`mnist-ann tune`: a hyperparameter search with Optuna over the same configs as `fit`.

mnist_ann.tune.space    the search space as the configs' `tune:` section states it, and each trial's config
mnist_ann.tune.study    the command: its options, the study's trials, a stop by a signal
mnist_ann.tune.storage  the study in its storage: opened, checked to be the same study, rid of dead trials
mnist_ann.tune.report   the end of a study: the best trials, and best.yaml for `fit`
"""
