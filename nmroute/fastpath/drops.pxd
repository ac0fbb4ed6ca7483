# The one table of drop reasons. Every dropped packet is counted under one of
# these, per element or per port; `rx == tx + drops` is checked against them.
# A reason's name is its member name without DROP_, lower case, '_' -> '-'.
# Append only: the numbers are counter slots.

cpdef enum DropReason:
    DROP_NONE = 0
    DROP_DROP = 1         # a `drop` element, or an output wired to drop
    DROP_OVERSIZE = 2     # frame longer than a pool buffer
    DROP_NO_BUFFER = 3    # pool exhausted when a copy was needed (tee)
    DROP_TX_FULL = 4      # tx ring full and the input could not be held back
    DROP_SHUTDOWN = 5     # still queued in a ring when the run stopped
    DROP_IO_ERROR = 6     # write to a file failed
    DROP_TRUNCATED = 7    # shorter than the headers it claims
    DROP_MALFORMED = 8    # header fields that make no sense
    DROP_BAD_OUTPUT = 9   # an element chose an output it does not have (its bug)

# Counter slots reserved per element and per port; reasons must stay below it.
cdef enum:
    N_DROP_REASONS = 32
