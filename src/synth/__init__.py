"""Synthetic CVM data at scale (``cvm data generate``): every table of the data contract, seeded and streamed.

``generate`` is the entry point. Inside: ``vocabulary`` (word lists and
conversation templates), ``world`` (the seeded customers and their tables as
columns, ``columns``), ``writers`` (Parquet, JSON lines, JSON and the
manifest) and ``dataset`` (arguments, folder, the chunk loop).
"""

from cvm.synth.dataset import GenerationResult, generate

__all__ = ["GenerationResult", "generate"]
