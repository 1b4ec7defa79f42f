"""The PyTorch adapter: a greenprec policy applied to a plain PyTorch training loop.

Three lines of a training loop change (docs/precision.md)::

    with greenprec.precision.torch_policy("mixed", device) as precision:  # 1
        for x, y in batches:
            optimizer.zero_grad()
            with precision.autocast():  # 2
                loss = loss_fn(model(x), y)
            precision.backward_step(loss, optimizer)  # 3: backward, (scaled) step

``import greenprec.precision`` does not import torch; everything here imports it when called.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import reduce
from types import TracebackType
from typing import TYPE_CHECKING, Any

from greenprec.errors import ConfigError, GreenprecWarning
from greenprec.frameworks import FrameworkInfo
from greenprec.precision.policies import Policy, resolve_policy

if TYPE_CHECKING:
    import torch
    from torch.utils.hooks import RemovableHandle

__all__ = [
    "CUDNN_SWITCH",
    "MATMUL_SWITCH",
    "PRECISION_SWITCH",
    "TorchPolicy",
    "active_policy",
    "read_tf32_switches",
    "torch_device",
    "torch_policy",
]

MATMUL_SWITCH = "torch.backends.cuda.matmul.allow_tf32"
CUDNN_SWITCH = "torch.backends.cudnn.allow_tf32"
PRECISION_SWITCH = "torch.get_float32_matmul_precision()"

# PyTorch 2.9+ also keeps the TF32 state as ``fp32_precision`` strings; older versions have
# none. Parents come first: setting a parent rewrites its children.
_PRECISION_PARENTS = ("backends", "backends.cudnn", "backends.mkldnn")
_PRECISION_LEAVES = (
    "backends.cuda.matmul",
    "backends.cudnn.conv",
    "backends.cudnn.rnn",
    "backends.mkldnn.matmul",
    "backends.mkldnn.conv",
    "backends.mkldnn.rnn",
)
_CPU_CONVOLUTIONS = ("backends.mkldnn.conv", "backends.mkldnn.rnn")

_active: list[TorchPolicy] = []
"""The entered adapters, innermost last: check_model's default, and who judges a step."""
_active_lock = threading.Lock()


def _precision_object(torch_module: Any, path: str) -> Any | None:
    """The object holding the ``fp32_precision`` string at ``path``; None before PyTorch 2.9."""
    try:
        holder = reduce(getattr, path.split("."), torch_module)
        holder.fp32_precision  # noqa: B018 - probing for the attribute is the point
    except (AttributeError, RuntimeError):
        return None
    return holder


def read_tf32_switches() -> dict[str, bool | str | None]:
    """The three TF32 switches as PyTorch reports them now, by their names in PyTorch.

    None for a switch PyTorch refuses to report: 2.9+ raises when the legacy switches and its
    ``fp32_precision`` strings were both used and disagree.
    """
    import torch

    def read(getter: Callable[[], bool | str]) -> bool | str | None:
        try:
            return getter()
        except RuntimeError:
            return None

    return {
        MATMUL_SWITCH: read(lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
        CUDNN_SWITCH: read(lambda: bool(torch.backends.cudnn.allow_tf32)),
        PRECISION_SWITCH: read(torch.get_float32_matmul_precision),
    }


def _tf32_allowed(switches: dict[str, bool | str | None]) -> bool | None:
    """Whether any switch lets float32 matmuls or convolutions use TF32; None if unknown."""
    known = [
        value if isinstance(value, bool) else value != "highest"
        for value in switches.values()
        if value is not None
    ]
    return any(known) if known else None


@dataclass(frozen=True)
class _Tf32State:
    switches: dict[str, bool | str | None]
    precision: dict[str, str]
    """``fp32_precision`` by path (PyTorch 2.9+; empty before)."""


def _save_tf32() -> _Tf32State:
    import torch

    precision = {}
    for path in (*_PRECISION_PARENTS, *_PRECISION_LEAVES):
        holder = _precision_object(torch, path)
        if holder is not None:
            precision[path] = str(holder.fp32_precision)
    return _Tf32State(read_tf32_switches(), precision)


def _apply_tf32(allow: bool) -> None:
    import torch

    # The legacy switches, not the fp32_precision strings, because code people run inside
    # the block reads them (Lightning calls torch.get_float32_matmul_precision()), and 2.9+
    # refuses to report them once only the new strings were set. A parent string left by the
    # new API would override them and make that refusal likely: "none" defers to them.
    for path in _PRECISION_PARENTS:
        holder = _precision_object(torch, path)
        if holder is not None:
            holder.fp32_precision = "none"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    torch.set_float32_matmul_precision("high" if allow else "highest")
    if not allow:
        # oneDNN's CPU convolutions have a TF32 (and bf16) float32 mode only the new API sets.
        for path in _CPU_CONVOLUTIONS:
            holder = _precision_object(torch, path)
            if holder is not None:
                holder.fp32_precision = "ieee"


def _restore_tf32(state: _Tf32State) -> None:
    import torch

    # Legacy switches first (each also writes hidden flags the strings do not show), the
    # matmul precision after the matmul switch it overrides, then every string as it was:
    # PyTorch then reports each switch it reported before exactly as before.
    switches = state.switches
    matmul, cudnn, precision = (
        switches[MATMUL_SWITCH],
        switches[CUDNN_SWITCH],
        switches[PRECISION_SWITCH],
    )
    if isinstance(matmul, bool):
        torch.backends.cuda.matmul.allow_tf32 = matmul
    if isinstance(cudnn, bool):
        torch.backends.cudnn.allow_tf32 = cudnn
    if isinstance(precision, str):
        torch.set_float32_matmul_precision(precision)
    for path, value in state.precision.items():
        holder = _precision_object(torch, path)
        if holder is not None:
            holder.fp32_precision = value


def _default_device() -> str:
    """``cuda`` when PyTorch sees a CUDA GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_device(device: str | torch.device | None) -> torch.device:
    """The ``torch.device`` for ``device`` (default: :func:`_default_device`); a ConfigError for a
    name PyTorch does not know or a GPU it does not see."""
    import torch

    if device is None:
        device = _default_device()
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"device {device!r} is not a PyTorch device; use 'cpu', 'cuda', 'cuda:1', 'mps'..."
        ) from None
    # Autocast for a device the tensors are not on changes nothing: a run that asked for the
    # GPU and silently trained in float32 on the CPU would be measured as the policy's.
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (chosen.index is not None and chosen.index >= count):
            raise ConfigError(
                f"device {str(chosen)!r}: PyTorch sees {count} CUDA GPU(s); use 'cpu' or "
                "leave the device unset"
            )
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps': PyTorch sees no Apple GPU; use 'cpu'")
    return chosen


_scaler_class: type[Any] | None = None


def _tracked_scaler(device_type: str, on_step: Callable[[bool], None]) -> torch.amp.GradScaler:
    """A ``torch.amp.GradScaler`` that tells its adapter when an optimizer step goes through it,
    so a step that bypasses it can be told apart."""
    global _scaler_class
    if _scaler_class is None:
        import torch

        class TrackedGradScaler(torch.amp.GradScaler):
            """greenprec's GradScaler: a plain one that reports its steps to the policy."""

            _greenprec_on_step: Callable[[bool], None]

            def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
                self._greenprec_on_step(True)
                try:
                    return super().step(optimizer, *args, **kwargs)
                finally:
                    self._greenprec_on_step(False)

        _scaler_class = TrackedGradScaler
    scaler: torch.amp.GradScaler = _scaler_class(device_type)
    scaler._greenprec_on_step = on_step  # type: ignore[attr-defined]
    return scaler


class TorchPolicy:
    """A policy for PyTorch on one device; a context manager that sets the TF32 switches.

    Entering sets ``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``
    and ``torch.set_float32_matmul_precision`` for the policy (TF32 allowed for ``tf32`` only)
    and restores all of them, and PyTorch 2.9's ``fp32_precision`` settings, on exit, also when
    the block raises. While it is entered it watches for mistakes that silently defeat the
    policy and warns (:class:`~greenprec.GreenprecWarning`) once each; they are kept in
    :attr:`problems`.
    """

    def __init__(self, policy: Policy, device: torch.device) -> None:
        import torch

        self.policy = policy
        self.device = device
        self.device_type: str = device.type
        self.compute_dtype: torch.dtype = getattr(torch, policy.compute_dtype)
        self.scaler: torch.amp.GradScaler | None = (
            _tracked_scaler(self.device_type, self._scaler_stepping)
            if policy.loss_scaling
            else None
        )
        """``torch.amp.GradScaler(device_type)`` for ``mixed``; None for the other policies."""
        self.problems: list[str] = []
        self.switches: dict[str, bool | str | None] = {}
        """The TF32 switches as read back after entering (empty before)."""
        self._saved: list[_Tf32State] = []
        self._step_hook: RemovableHandle | None = None
        self._forward_hook: RemovableHandle | None = None
        self._warned: set[str] = set()
        self._autocast_used = False
        self._autocast_forward_seen = False
        self._stepping_through_scaler = False

    def __repr__(self) -> str:
        return f"TorchPolicy({self.policy.name!r}, device={str(self.device)!r})"

    @property
    def reduced(self) -> bool:
        """Whether the policy computes in float16 or bfloat16 under :meth:`autocast`."""
        return self.policy.compute_dtype != "float32"

    def __enter__(self) -> TorchPolicy:
        import torch
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self._saved.append(_save_tf32())
        try:
            _apply_tf32(self.policy.allow_tf32)
            self.switches = read_tf32_switches()
        except BaseException:
            _restore_tf32(self._saved.pop())
            raise
        if len(self._saved) == 1:
            self._step_hook = register_optimizer_step_pre_hook(self._before_step)
            if self.reduced and not self._autocast_forward_seen:
                self._forward_hook = torch.nn.modules.module.register_module_forward_pre_hook(
                    self._before_forward
                )
        with _active_lock:
            _active.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with _active_lock:
            if self in _active:
                # The innermost entry of this adapter, wherever it is in the stack.
                del _active[len(_active) - 1 - _active[::-1].index(self)]
        try:
            _restore_tf32(self._saved.pop())
        finally:
            if not self._saved:
                self._remove_hooks()

    def _remove_hooks(self) -> None:
        for hook in (self._step_hook, self._forward_hook):
            if hook is not None:
                hook.remove()
        self._step_hook = self._forward_hook = None

    def autocast(self) -> AbstractContextManager[Any]:
        """``torch.autocast(device_type, dtype=float16 | bfloat16)`` for ``mixed``/``bf16``;
        a block that changes nothing for ``fp32``/``tf32``. Wrap the forward pass and the loss.
        """
        if not self.reduced:
            return nullcontext()
        return self._autocast()

    @contextmanager
    def _autocast(self) -> Iterator[None]:
        import torch

        self._autocast_used = True
        with torch.autocast(self.device_type, dtype=self.compute_dtype):
            yield

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward(); optimizer.step()``, through the scaler under ``mixed``:
        ``scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()``.

        Call ``optimizer.zero_grad()`` yourself, as in the loop it replaces.
        """
        import torch

        if loss.dtype in (torch.float16, torch.bfloat16):
            self._problem(
                "reduced-loss",
                f"the loss passed to backward_step is {str(loss.dtype).removeprefix('torch.')}: "
                "it was computed outside autocast from reduced-precision tensors (a model "
                "moved to .half()?), so the loss and its gradient lose precision; compute "
                "the loss in float32 inside `with precision.autocast():`, where autocast "
                "runs losses in float32",
                stacklevel=2,
            )
        if self.scaler is None:
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            return
        self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        self.scaler.step(optimizer)
        self.scaler.update()

    def framework_info(self) -> FrameworkInfo:
        """PyTorch's version, this device, and the TF32 switches as this adapter set them."""
        import torch

        switches = self.switches or read_tf32_switches()
        device = str(self.device)
        name: str | None = None
        if self.device_type == "cuda" and torch.cuda.is_available():
            index = self.device.index if self.device.index is not None else 0
            device = f"cuda:{index}"
            name = torch.cuda.get_device_name(index)
        elif self.device_type == "cpu":
            from greenprec.host import cpu_model

            name = cpu_model() or None
        elif self.device_type == "mps":
            # The Metal device ("Apple M2 Ultra"), where this PyTorch can name it: recorded
            # beside the apple meter's figures as a CUDA GPU's name is beside nvml's.
            get_name = getattr(torch.backends.mps, "get_name", None)
            name = str(get_name()) if callable(get_name) else None
        return FrameworkInfo(
            name="torch",
            version=str(torch.__version__),
            device=device,
            device_name=name,
            tf32=_tf32_allowed(switches),
            switches=dict(switches),
        )

    # --- what silently defeats the policy ---------------------------------------------------

    def _problem(self, key: str, message: str, *, stacklevel: int) -> None:
        """Warn about a problem once per adapter; ``stacklevel`` counts from the caller."""
        if key in self._warned:
            return
        self._warned.add(key)
        self.problems.append(message)
        warnings.warn(message, GreenprecWarning, stacklevel=stacklevel + 1)

    def _scaler_stepping(self, stepping: bool) -> None:
        self._stepping_through_scaler = stepping

    def _before_forward(self, module: Any, args: Any) -> None:
        import torch

        if torch.is_autocast_enabled(self.device_type):
            self._autocast_forward_seen = True
            # Seen once is enough, and the hook runs on every module call: it goes.
            if self._forward_hook is not None:
                self._forward_hook.remove()
                self._forward_hook = None

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        with _active_lock:
            innermost = _active[-1] if _active else None
        if innermost is not self:
            return
        name = type(optimizer).__name__
        if self.reduced and not self._autocast_forward_seen:
            self._problem(
                "no-autocast",
                f"the policy is {self.policy.name} but {name} stepped before any module ran "
                "under autocast: the model computes in float32; wrap the forward pass and the "
                "loss in `with precision.autocast():`",
                stacklevel=3,  # the hook, torch's step wrapper, the caller of step()
            )
        if self.scaler is not None and self._autocast_used and not self._stepping_through_scaler:
            self._problem(
                "no-scaler",
                f"the policy is mixed but {name} stepped without the gradient scaler, so "
                "float16 gradients that underflow to zero are applied as zeros: use "
                "precision.backward_step(loss, optimizer), or scaler.scale(loss).backward(); "
                "scaler.step(optimizer); scaler.update() with precision.scaler",
                stacklevel=3,
            )


def torch_policy(policy: str | Policy, device: str | torch.device | None = None) -> TorchPolicy:
    """The PyTorch adapter for ``policy`` on ``device`` (default: ``cuda`` if available, else
    ``cpu``). Enter it around training; see :class:`TorchPolicy`."""
    chosen = resolve_policy(policy)
    try:
        import torch  # noqa: F401 - a missing torch is named here, with the extra to install
    except ImportError as error:
        raise ConfigError("the PyTorch adapter needs torch; install greenprec[torch]") from error
    return TorchPolicy(chosen, torch_device(device))


def active_policy() -> TorchPolicy | None:
    """The innermost entered :class:`TorchPolicy` of any thread, or None."""
    with _active_lock:
        return _active[-1] if _active else None
