"""Process groups, rank layout math and local multi-process launching (gloo on CPU, NCCL on CUDA)."""
