"""Tools built on the fast path: netmap's bridge and pkt-gen, and the live benchmark."""
import argparse


def int_range(lo: int, hi: int, base: int = 10):
    """An argparse type: an integer in lo..hi (base 0: 0x.. and 0o.. too)."""
    def conv(text):
        try:
            v = int(text, base)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {lo}..{hi}, got {v}")
        return v
    return conv
