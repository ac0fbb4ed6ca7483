"""The one place that turns failures into messages and exit codes."""
import sys

OK = 0
FAILED = 1        # ran, but something went wrong (accounting, I/O)
BAD_CONFIG = 2    # usage or configuration errors: nothing was opened
NO_PORT = 3       # a port or element could not be set up


def fail(message: str, code: int) -> int:
    print(f"nmroute: {message}" if "\n" not in message else message, file=sys.stderr)
    return code
