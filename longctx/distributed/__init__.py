"""Sequence parallelism without a model: the layout registry (``layouts``), the index math of
sharding a pack (``sharding``), the DP x SP process groups (``mesh``) and local multi-process
launching (``launch``: gloo on CPU, NCCL on CUDA)."""
