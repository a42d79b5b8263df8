"""Command-line tools (console scripts in pyproject.toml; also ``python -m aspects_research.tools.<name>``).

They run with NumPy's transparent-huge-page advice off, as the app does (aspects/memory.py): the
evaluation and rescoring tools spent about a third of their CPU time zeroing huge pages in the
kernel with it on (perf, session 22). Set here, before a tool imports NumPy.
"""

from aspects.memory import no_numpy_hugepages

no_numpy_hugepages()


def one_line_errors(body) -> int:
    """``body()``'s exit code; an input problem ends in its ``error[N]:`` line and code N, and
    anything else in one ``error[1]:`` line: the tools' console shows no traceback, as the app's."""
    import sys

    from aspects.errors import EXIT_INTERNAL, InputError

    try:
        return body()
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
        print(f"error[{EXIT_INTERNAL}]: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
