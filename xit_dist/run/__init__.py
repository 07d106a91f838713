"""Carrying a plan out on a Ray cluster: the one setup every run goes through (``session``), the
cluster it uses (``ray_cluster``, ``storage``), the jobs the workers get (``jobs``), the
scheduler of a grid's phases (``scheduler``), zero-shot results (``evaluation``), the MLflow run
tree (``runs``) and submitting to a remote cluster (``submit``). It sits below the commands that
drive it (``cli``, ``tune``, ``report``) and above ``plan`` and ``train``.
"""
