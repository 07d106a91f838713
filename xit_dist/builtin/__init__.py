"""What runs without the hub: the tiny XLM-R models (``models``) and the paper's models'
``config.json`` files (``configs/``), the synthetic benchmark in the hubs' exact schemas
(``demo_data``, ``demo_formats``), and the build-once cache they are written to (``assets``,
``publish``). It shares a layer with tasks, data and evaluate: the demo data is written per task,
and data and the spec's checks read the built-in names.
"""
