"""What a spec will do, worked out before anything starts: its phases and their content hashes
(``phases``), grids of specs (``grid``), every path under ``output_dir`` (``layout``), the checks
before Ray (``preflight``, ``disk_space``, ``model_config``) and what ``xit-dist plan`` prints
(``view``, ``estimate``). It sits below ``run``, which carries a plan out, and above ``train``
and ``config``: planning reads the spec and the task table and starts no cluster.
"""
