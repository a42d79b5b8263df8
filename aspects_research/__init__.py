"""Research and tooling code of the ASPECTS project: synthetic studies, metrics, agreement
statistics, training losses and the command-line tools (``aspects_research.tools``).

Not part of the application package (the MAP ships ``aspects``, ``operators`` and ``app.py``);
it depends on ``aspects``, never the other way round.
"""
