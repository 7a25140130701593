"""The lakehouse itself, below both the streaming chain (`pipelines`) and the model (`ml`).

Where tables live (`layout`, `generations`), which tables there are (`catalogue`), what they hold
(`schemas`, `aggregates`), what a valid message is (`validation`), and how they are written (`delta_io`).
It imports nothing of `pipelines`, `ml` or `app`: `make lint` checks that with import-linter.
"""
