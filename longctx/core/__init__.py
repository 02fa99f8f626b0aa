"""The ground layer: what every stage and every layer above may import, and which imports nothing else of ours.

Errors, atomic file writing, label constants, checkpoint-file reading, the byte tokenizer, the chunked
weighted loss and the automatic sizes it shares with the planner. ``docs/architecture.md`` has the layers.
"""
