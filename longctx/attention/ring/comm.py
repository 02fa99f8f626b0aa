"""Ring neighbour exchange with batched ``isend``/``irecv`` (``P2POp``), so compute can overlap.

Rank ``r`` of the group sends to ``r+1`` and receives from ``r-1`` (mod W). ``send_recv`` starts
the exchange and returns at once; ``wait`` blocks until the received tensors are valid. Works with
gloo (CPU) and NCCL (CUDA); peers are translated to global ranks so any sub-group works.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class RingComm:
    def __init__(self, group: dist.ProcessGroup | None = None):
        self.group = group if group is not None else dist.group.WORLD
        self.rank = dist.get_rank(self.group)
        self.world_size = dist.get_world_size(self.group)
        self.send_peer = dist.get_global_rank(self.group, (self.rank + 1) % self.world_size)
        self.recv_peer = dist.get_global_rank(self.group, (self.rank - 1) % self.world_size)
        self._reqs: list = []
        self._keep: list = []

    def send_recv(self, tensors: list[torch.Tensor], tag: int = 0) -> list[torch.Tensor]:
        """Start sending ``tensors`` to the next rank; returns buffers the previous rank's fill after ``wait``."""
        if self._reqs:
            raise RuntimeError("RingComm.send_recv called before wait() of the previous exchange")
        recv = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]
        send = [t.contiguous() for t in tensors]
        self._keep = send  # keep the send buffers alive until wait()
        ops = []
        for t, r in zip(send, recv):
            ops.append(dist.P2POp(dist.isend, t, self.send_peer, self.group, tag))
            ops.append(dist.P2POp(dist.irecv, r, self.recv_peer, self.group, tag))
        self._reqs = dist.batch_isend_irecv(ops)
        return recv

    def wait(self) -> None:
        for req in self._reqs:
            req.wait()
        self._reqs = []
        self._keep = []
