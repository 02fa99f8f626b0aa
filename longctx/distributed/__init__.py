"""Sequence parallelism: the layout registry (``layouts``: one module per layout, its spans, kernel and
communication), the index math of sharding a pack (``sharding``), every process group (``mesh``: DP x
SP and the sub-groups a layout declares), local multi-process launching (``launch``: gloo on CPU,
NCCL on CUDA) and the transformers glue that runs a layout's kernel (``hf_attention``: ``longctx_ring``,
``longctx_varlen``, the ``sequence_parallel`` context). Above the kernels (:mod:`longctx.attention`)."""
