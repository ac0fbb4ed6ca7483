"""Drop reasons by name (the table itself is drops.pxd)."""
from nmroute.fastpath.drops cimport N_DROP_REASONS

N_REASONS = N_DROP_REASONS


def reason_name(member):
    name = member.name[5:].lower().replace("_", "-")
    if name.startswith("malformed-"):
        name = "malformed:" + name[len("malformed-"):]
    return name


def reason_names():
    """Index -> name, e.g. 3 -> 'no-buffer', 13 -> 'malformed:ipv4'."""
    return {int(m): reason_name(m) for m in DropReason}


assert max(int(m) for m in DropReason) < N_DROP_REASONS
