"""Command-line tools (console scripts in pyproject.toml; also ``python -m aspects_research.tools.<name>``)."""
