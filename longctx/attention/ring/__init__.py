"""Ring (sequence-parallel) attention: zigzag and varlen (all-gather K/V) layouts."""
