"""Command-line tools (console scripts in pyproject.toml; also ``python -m aspects_research.tools.<name>``).

They run with NumPy's transparent-huge-page advice off, as the app does (aspects/memory.py): the
evaluation and rescoring tools spent about a third of their CPU time zeroing huge pages in the
kernel with it on (perf, session 22). Set here, before a tool imports NumPy.
"""

from aspects.memory import no_numpy_hugepages

no_numpy_hugepages()
