"""Batch and descriptor layout (declarations in batch.pxd)."""
from nmroute.fastpath.batch cimport Desc, BATCH_MAX

DESC_SIZE = sizeof(Desc)
MAX = BATCH_MAX
assert DESC_SIZE == 64, f"Desc must fill one cache line, is {DESC_SIZE} bytes"
