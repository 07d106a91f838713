"""The experiment spec a user writes: its pydantic models (``spec``), reading it from YAML with
``--set`` overrides and one-line errors (``load``, ``yaml_files``), its paths made absolute
(``paths``), the micro-batch rule (``batch``) and the best configuration of a search taken into a
stage (``training_from``). It sits below ``train`` (a phase trains from a ``TrainingConfig``)
and above tasks, data, evaluate and builtin, which a spec's checks consult; it imports no ray,
deepspeed or torch, so that validating a spec is fast and starts nothing.
"""
