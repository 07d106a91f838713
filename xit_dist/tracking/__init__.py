"""MLflow, as every layer writes to and reads from it: the tracking store and its runs
(``store``) and every ``xit.*`` tag name (``tags``), which are how runs are found again. A low
layer: ``train`` logs through it, ``run``, ``tune`` and ``report`` find runs through it, and it
imports nothing of xit-dist above ``errors`` (its phase lock still comes from ``train``, an
exception listed in the layers contract).
"""
