"""Reports: paper-style tables and plots of grids read back from MLflow (``tables``), the
studies' own sections (``studies``) and the MLflow UI launcher (``ui``). A top layer beside
``tune``, below ``cli``: it reads what runs recorded (``tracking``) and the grid files (``plan``,
``config``), and nothing below imports it.

The study sections register with ``tables.report_section`` when ``studies`` is imported, and it
is imported here, once, so that every use of ``xit_dist.report`` has them (``tables`` itself does
not import ``studies``, which builds on it).
"""

from xit_dist.report import studies  # noqa: F401  (registers the studies' sections)
