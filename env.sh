# Source this file: activates the venv and sets what holoscan needs on a CPU-only machine.
_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$_here/.venv/bin/activate"
export LD_LIBRARY_PATH="$_here/.venv/lib/python3.11/site-packages/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$_here${PYTHONPATH:+:$PYTHONPATH}"
ulimit -s 32768 2>/dev/null || true
unset _here
