"""Replay and redrive: `redrive` quarantined records, `rewind` a stream, `reprocess` raw."""
