"""Recording a PyTorch model's gradients for gradtail (needs ``torch``; importing this
module without it raises ImportError).

gradtail measures gradient *noise*: the spread of minibatch gradients around the full-batch
gradient at one set of weights. The protocol is therefore K minibatches at fixed weights:
no optimizer step while recording, one backward pass per minibatch, one :meth:`step` per
minibatch::

    import itertools, torch, gradtail.torch

    model.train()                       # as in training (dropout, batch norm)
    recorder = gradtail.torch.GradientRecorder(model)
    for x, y in itertools.islice(loader, 256):          # K = 256 minibatches
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        recorder.step()                 # one sample of every parameter's gradient
    result = recorder.finish(center="mean")
    print(result)                       # the per-tensor table
    result.save("gradtail-out")         # report.html, summary.json, ...

Gradients are copied to the host and spilled to disk at each step (see
:class:`gradtail.Accumulator`), so memory stays at one gradient whatever K is. float16,
bfloat16, float32 and float64 parameters are recorded in their own dtype. Gradient
accumulation over several backward passes per sample works: the hooks fire after each
backward and :meth:`step` takes the accumulated gradient.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional

import torch

from . import Accumulator, Result, bf16


def _to_numpy(grad: "torch.Tensor") -> Any:
    g = grad.detach()
    if g.dtype == torch.bfloat16:
        return bf16(g.view(torch.int16).cpu().numpy())
    return g.cpu().numpy()


class GradientRecorder:
    """Collects one gradient sample per :meth:`step` from a model's named parameters,
    through hooks that fire once a parameter's gradient is accumulated.

    Args:
        model: the ``torch.nn.Module`` whose ``named_parameters()`` are recorded.
        include: a predicate on parameter names (default: every parameter that requires a
            gradient).
        spill_dir: where the samples are spilled (default: a temporary folder); or pass
            ``accumulator`` to collect into an existing :class:`gradtail.Accumulator`.
    """

    def __init__(
        self,
        model: "torch.nn.Module",
        include: Optional[Callable[[str], bool]] = None,
        spill_dir: Optional["os.PathLike[str] | str"] = None,
        accumulator: Optional[Accumulator] = None,
    ) -> None:
        self.accumulator = accumulator if accumulator is not None else Accumulator(spill_dir)
        self._grads: Dict[str, "torch.Tensor"] = {}
        params = [
            (name, p)
            for name, p in model.named_parameters()
            if p.requires_grad and (include is None or include(name))
        ]
        if not params:
            raise ValueError("the model has no parameter to record (none requires a gradient)")
        self.names: List[str] = [name for name, _ in params]
        self._handles = [self._hook(name, p) for name, p in params]

    def _hook(self, name: str, p: "torch.Tensor") -> Any:
        if hasattr(p, "register_post_accumulate_grad_hook"):  # torch >= 2.1

            def after_accumulate(param: "torch.Tensor") -> None:
                self._grads[name] = param.grad

            return p.register_post_accumulate_grad_hook(after_accumulate)

        # Older torch: the hook sees each backward's gradient, summed here as .grad would be.
        def on_grad(grad: "torch.Tensor") -> None:
            held = self._grads.get(name)
            self._grads[name] = grad.detach().clone() if held is None else held + grad

        return p.register_hook(on_grad)

    def step(self) -> None:
        """Takes the gradients accumulated since the last step as one sample. Call it after
        the backward pass(es) of each minibatch, before the gradients are zeroed."""
        if not self._grads:
            raise RuntimeError(
                "no gradient arrived since the last step(); call step() after loss.backward()"
            )
        sample = {name: _to_numpy(self._grads[name]) for name in self.names if name in self._grads}
        self._grads = {}
        self.accumulator.observe(sample)

    @property
    def samples(self) -> int:
        """Samples recorded so far."""
        return self.accumulator.samples

    def remove(self) -> None:
        """Detaches the hooks from the model (the samples are kept)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def finish(self, **options: Any) -> Result:
        """Detaches the hooks and analyses the samples, with :func:`gradtail.analyze`'s
        options (``center``, ``block``, ``backend``)."""
        self.remove()
        return self.accumulator.finish(**options)

    def __enter__(self) -> "GradientRecorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


__all__ = ["GradientRecorder"]
