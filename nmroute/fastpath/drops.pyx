"""Drop reasons by name (the table itself is drops.pxd)."""
from nmroute.fastpath.drops cimport N_DROP_REASONS

N_REASONS = N_DROP_REASONS


def reason_names():
    """Index -> name, e.g. 3 -> 'no-buffer'; unused slots are absent."""
    return {int(m): m.name[5:].lower().replace("_", "-") for m in DropReason}
