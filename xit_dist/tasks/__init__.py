"""Tasks: one module per benchmark task (its hub data, columns and languages), the task table in
``xit_dist.tasks.registry`` (``get_task``, ``task_names``), and ``formats/``, the TaskFormat
contract that turns a task's rows into features and predictions into scores.

This package's ``__init__`` imports nothing, so importing one task module or ``tasks.base``
does not import every task: look tasks up through ``xit_dist.tasks.registry``.
"""
