"""Whether the device training runs on does float16, bfloat16 and TF32 natively, per framework.

Two questions are answered separately: does the *hardware* have the arithmetic (instruction
flags, compute capability), and does the *framework* (TensorFlow or PyTorch) use it when
training. They differ on x86 CPUs: see docs/precision.md for the timings behind the CPU rules
below. Neither framework is imported here; one that is already imported is asked for its GPU.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, distribution
from typing import Any

from greenprec.errors import ConfigError
from greenprec.host import CPUINFO, nvidia_gpus, read_cpuinfo
from greenprec.precision.policies import Policy, resolve_policy

__all__ = ["FRAMEWORKS", "DtypeSupport", "SupportReport", "emulation_warnings", "support"]

FRAMEWORKS = {
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "torch": "torch",
    "pytorch": "torch",
}
"""Accepted framework names (any case) and the canonical one: ``tensorflow`` or ``torch``."""
_LABELS = {"tensorflow": "TensorFlow", "torch": "PyTorch"}

_X86_FP16_FLAGS = ("avx512_fp16", "amx_fp16")
_X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# aarch64 /proc/cpuinfo "Features": fphp/asimdhp are half-precision arithmetic, bf16 is FEAT_BF16.
_ARM_FP16_FLAGS = ("asimdhp", "fphp")
_ARM_BF16_FLAGS = ("bf16",)


@dataclass(frozen=True)
class DtypeSupport:
    """How one reduced-precision dtype runs on the device."""

    dtype: str
    policy: str
    hardware: bool
    """The device has native arithmetic (or matrix units) for this dtype."""
    native: bool
    """Training with the framework here runs it natively; False means emulated, a slow path,
    or (for TF32) float32 as usual."""
    reason: str
    """A short clause that says why, e.g. ``no AVX-512 FP16/AMX-FP16``."""

    @property
    def emulated(self) -> bool:
        return not self.native


@dataclass(frozen=True)
class SupportReport:
    """The result of :func:`support`: the device and its float16 / bfloat16 / TF32 verdicts."""

    device: str
    """``cpu`` or ``gpu``."""
    name: str
    platform: str
    """``x86_64``, ``aarch64``, ``apple`` or ``nvidia``."""
    fp16: DtypeSupport
    bf16: DtypeSupport
    tf32: DtypeSupport
    """TF32 tensor cores for float32 matmuls and convolutions (the ``tf32`` policy)."""
    flags: tuple[str, ...] = ()
    """The precision-related CPU flags found."""
    compute_capability: str | None = None
    caveats: tuple[str, ...] = ()
    detected_by: str = ""
    framework: str = "tensorflow"
    """The framework the verdicts are for: ``tensorflow`` or ``torch``."""

    def for_policy(self, policy: str | Policy) -> DtypeSupport | None:
        """The verdict for a policy; None for fp32, which is always native."""
        chosen = resolve_policy(policy)
        return {"mixed": self.fp16, "bf16": self.bf16, "tf32": self.tf32}.get(chosen.name)

    def emulated(self, policy: str | Policy) -> bool:
        verdict = self.for_policy(policy)
        return verdict is not None and verdict.emulated

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(self.flags)
        data["caveats"] = list(self.caveats)
        return data


def _onednn_enabled(env: Mapping[str, str]) -> bool:
    # TensorFlow enables oneDNN by default on x86 Linux; only an explicit 0/false turns it off.
    return env.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false", "no")


def _cpu_tf32() -> DtypeSupport:
    return DtypeSupport(
        "tensorfloat32",
        "tf32",
        hardware=False,
        native=False,
        reason="TF32 is an NVIDIA tensor-core format (compute capability 8.0+); a CPU computes "
        "float32",
    )


def _x86_kernels(framework: str, env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether oneDNN's kernels run for ``framework`` here, and how to name them."""
    # PyTorch's CPU kernels for convolutions and matmuls are oneDNN's too, always on: the
    # TF_ENABLE_ONEDNN_OPTS switch is TensorFlow's alone.
    onednn = _onednn_enabled(env) if framework == "tensorflow" else True
    kernels = (
        "TensorFlow's oneDNN kernels"
        if framework == "tensorflow"
        else "oneDNN (PyTorch's CPU kernels)"
    )
    return onednn, kernels


def _x86_fp16(
    fp16_flags: list[str], framework: str, onednn: bool, kernels: str
) -> tuple[DtypeSupport, list[str]]:
    """The float16 verdict on an x86 CPU with ``fp16_flags``, and its caveats."""
    label = _LABELS[framework]
    if "amx_fp16" in fp16_flags and onednn:
        fp16 = DtypeSupport(
            "float16",
            "mixed",
            hardware=True,
            native=True,
            reason=f"amx_fp16 through {kernels}",
        )
        return fp16, [
            f"{label} on CPU: float16 with AMX-FP16 was not measured by greenprec; without "
            "AMX, oneDNN computes float16 convolution weight gradients with its slow reference "
            "kernel, so check with a short run"
        ]
    if not fp16_flags:
        fp16 = DtypeSupport(
            "float16", "mixed", hardware=False, native=False, reason="no AVX-512 FP16/AMX-FP16"
        )
        return fp16, []
    fp16 = DtypeSupport(
        "float16",
        "mixed",
        hardware=True,
        native=False,
        reason=(
            f"it has {'/'.join(fp16_flags)}, but TensorFlow's CPU kernels take a slow path "
            "for float16 convolution gradients"
            if framework == "tensorflow"
            else f"it has {'/'.join(fp16_flags)}, but without AMX-FP16 oneDNN (PyTorch's "
            "CPU kernels) takes a slow path for float16 convolution gradients"
        ),
    )
    if framework == "torch":
        return fp16, [
            "PyTorch on CPU: float16 with AVX-512 FP16 but no AMX-FP16 was measured through "
            "TensorFlow's oneDNN (its weight gradients ran ~500x the float32 time), not "
            "through PyTorch; check with a short run"
        ]
    if onednn:
        return fp16, [
            "TensorFlow on CPU: with AVX-512 FP16 but no AMX-FP16, oneDNN computes float16 "
            "convolution weight gradients with its reference kernel (~500x the float32 time "
            "measured on a Xeon); float16 CNN training is many times slower than float32"
        ]
    return fp16, []


def _x86_bf16(
    bf16_flags: list[str], framework: str, onednn: bool, kernels: str
) -> tuple[DtypeSupport, list[str]]:
    """The bfloat16 verdict on an x86 CPU with ``bf16_flags``, and its caveats."""
    if bf16_flags and onednn:
        bf16 = DtypeSupport(
            "bfloat16",
            "bf16",
            hardware=True,
            native=True,
            reason=f"{'/'.join(bf16_flags)} through {kernels}",
        )
        if "amx_bf16" in bf16_flags:
            return bf16, []
        return bf16, [
            f"{_LABELS[framework]} on CPU: bfloat16 without AMX was not measured; AVX-512 BF16 "
            "alone may not beat float32"
        ]
    if bf16_flags:
        bf16 = DtypeSupport(
            "bfloat16",
            "bf16",
            hardware=True,
            native=False,
            reason=f"it has {'/'.join(bf16_flags)}, but TF_ENABLE_ONEDNN_OPTS=0 turns off "
            "the oneDNN kernels that use it",
        )
        return bf16, []
    bf16 = DtypeSupport(
        "bfloat16", "bf16", hardware=False, native=False, reason="no AVX-512 BF16/AMX-BF16"
    )
    return bf16, []


def _x86(name: str, flags: frozenset[str], env: Mapping[str, str], framework: str) -> SupportReport:
    fp16_flags = [flag for flag in _X86_FP16_FLAGS if flag in flags]
    bf16_flags = [flag for flag in _X86_BF16_FLAGS if flag in flags]
    onednn, kernels = _x86_kernels(framework, env)
    fp16, fp16_caveats = _x86_fp16(fp16_flags, framework, onednn, kernels)
    bf16, bf16_caveats = _x86_bf16(bf16_flags, framework, onednn, kernels)
    caveats = fp16_caveats + bf16_caveats
    if not onednn:
        caveats.append(
            "TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's Eigen kernels emulate float16 and bfloat16"
        )
    return SupportReport(
        device="cpu",
        name=name or "x86-64 CPU",
        platform="x86_64",
        fp16=fp16,
        bf16=bf16,
        tf32=_cpu_tf32(),
        flags=tuple(sorted(set(fp16_flags + bf16_flags))),
        caveats=tuple(caveats),
        framework=framework,
    )


def _aarch64(name: str, flags: frozenset[str], framework: str) -> SupportReport:
    fp16_flags = [flag for flag in _ARM_FP16_FLAGS if flag in flags]
    bf16_flags = [flag for flag in _ARM_BF16_FLAGS if flag in flags]

    def verdict(dtype: str, policy: str, found: list[str], missing: str) -> DtypeSupport:
        if found:
            return DtypeSupport(dtype, policy, True, True, f"the CPU has {'/'.join(found)}")
        return DtypeSupport(dtype, policy, False, False, missing)

    return SupportReport(
        device="cpu",
        name=name or "Arm CPU",
        platform="aarch64",
        fp16=verdict("float16", "mixed", fp16_flags, "no Armv8.2 half-precision (asimdhp)"),
        bf16=verdict("bfloat16", "bf16", bf16_flags, "no Armv8.6 BF16"),
        tf32=_cpu_tf32(),
        flags=tuple(sorted(set(fp16_flags + bf16_flags))),
        caveats=(
            f"{_LABELS[framework]} on Arm CPUs: not measured by greenprec; check with a short run",
        ),
        framework=framework,
    )


def _apple_chip() -> str:
    try:
        result = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()


def _apple(chip: str, framework: str) -> SupportReport:
    match = re.search(r"\bM(\d+)\b", chip)
    generation = int(match.group(1)) if match else None
    fp16 = DtypeSupport("float16", "mixed", True, True, "Apple silicon has native float16")
    if generation is None:
        bf16 = DtypeSupport(
            "bfloat16",
            "bf16",
            False,
            False,
            f"unknown Apple chip {chip!r}: M2 and later have bfloat16, M1 does not",
        )
    elif generation >= 2:
        bf16 = DtypeSupport("bfloat16", "bf16", True, True, f"{chip} (M2 and later have BF16)")
    else:
        bf16 = DtypeSupport("bfloat16", "bf16", False, False, f"{chip} has no BF16 (M2+ does)")
    return SupportReport(
        device="cpu",
        name=chip or "Apple silicon",
        platform="apple",
        fp16=fp16,
        bf16=bf16,
        tf32=_cpu_tf32(),
        caveats=(
            "TensorFlow on macOS runs on the CPU unless tensorflow-metal is installed; "
            "not measured by greenprec"
            if framework == "tensorflow"
            else "PyTorch on macOS runs on the CPU unless the device is 'mps'; not measured by "
            "greenprec",
        ),
        framework=framework,
    )


def _nvidia(name: str, capability: str, framework: str = "tensorflow") -> SupportReport:
    try:
        major, minor = (int(part) for part in capability.split(".")[:2])
    except ValueError:
        raise ConfigError(f"compute capability must look like '8.0', got {capability!r}") from None
    value = (major, minor)
    if value >= (7, 0):
        fp16 = DtypeSupport(
            "float16", "mixed", True, True, f"compute capability {capability} has tensor cores"
        )
    else:
        fp16 = DtypeSupport(
            "float16",
            "mixed",
            False,
            False,
            f"compute capability {capability} has no tensor cores (needs 7.0+)",
        )
    if value >= (8, 0):
        bf16 = DtypeSupport(
            "bfloat16", "bf16", True, True, f"compute capability {capability} has BF16 tensor cores"
        )
    else:
        bf16 = DtypeSupport(
            "bfloat16",
            "bf16",
            False,
            False,
            f"compute capability {capability} has no bfloat16 (needs 8.0+)",
        )
    if value >= (8, 0):
        tf32 = DtypeSupport(
            "tensorfloat32",
            "tf32",
            True,
            True,
            f"compute capability {capability} has TF32 tensor cores",
        )
    else:
        tf32 = DtypeSupport(
            "tensorfloat32",
            "tf32",
            False,
            False,
            f"compute capability {capability} has no TF32 (needs 8.0+)",
        )
    return SupportReport(
        device="gpu",
        name=name or "NVIDIA GPU",
        platform="nvidia",
        fp16=fp16,
        bf16=bf16,
        tf32=tf32,
        compute_capability=f"{major}.{minor}",
        framework=framework,
    )


def _tensorflow_gpu() -> tuple[str, str] | None:
    """(name, compute capability) of TF's first GPU; only when TF is already imported."""
    tf: Any = sys.modules["tensorflow"]
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability")
    if not capability:
        return None
    return str(details.get("device_name", "NVIDIA GPU")), "{}.{}".format(*capability)


def _nvidia_smi() -> tuple[str, str] | None:
    for gpu in nvidia_gpus():
        capability = gpu.get("compute_capability", "")
        if re.fullmatch(r"\d+\.\d+", capability):
            return gpu.get("name", ""), capability
    return None


def _torch_gpu() -> tuple[str, str] | None:
    """(name, compute capability) of PyTorch's current GPU; only once PyTorch has initialised
    CUDA (asking earlier would initialise it, which a later fork cannot undo)."""
    torch: Any = sys.modules["torch"]
    if not torch.cuda.is_initialized():
        return None
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return str(torch.cuda.get_device_name(index)), f"{major}.{minor}"


def _tensorflow_is_cpu_only() -> bool:
    try:
        distribution("tensorflow-cpu")
    except PackageNotFoundError:
        return False
    return True


def _torch_is_cpu_only() -> bool:
    """A CPU-only PyTorch wheel (``2.5.1+cpu``), from its metadata, without importing it."""
    try:
        version = distribution("torch").version
    except PackageNotFoundError:
        return False
    return version.endswith("+cpu")


def _framework(framework: str) -> str:
    try:
        return FRAMEWORKS[framework.strip().lower()]
    except (KeyError, AttributeError):
        raise ConfigError(
            f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}"
        ) from None


def support(
    device: str | None = None,
    *,
    framework: str = "tensorflow",
    cpuinfo: str | os.PathLike[str] = CPUINFO,
    cpu_flags: Iterable[str] | None = None,
    cpu_name: str | None = None,
    compute_capability: str | tuple[int, int] | None = None,
    gpu_name: str | None = None,
    system: str | None = None,
    machine: str | None = None,
    env: Mapping[str, str] | None = None,
) -> SupportReport:
    """Report whether float16, bfloat16 and TF32 are native on the device training runs on.

    ``framework`` is whose kernels are judged: ``tensorflow`` (also ``keras``, the default) or
    ``torch`` (also ``pytorch``). ``device`` is ``"cpu"``, ``"gpu"`` or None: the framework's
    GPU (asked only when the framework is already imported, and PyTorch only once it has
    initialised CUDA; otherwise an NVIDIA GPU found by ``nvidia-smi``, unless the installed
    framework is a CPU-only build), else the CPU. No framework is ever imported here.

    The other arguments replace what is read from the machine (for tests and what-ifs):
    ``cpuinfo`` path, ``cpu_flags``, ``cpu_name``, ``compute_capability`` (``"8.0"`` or
    ``(8, 0)``; implies the GPU), ``gpu_name``, ``system`` and ``machine`` as in
    :mod:`platform` (``Darwin`` + ``arm64`` is Apple silicon, where ``cpu_name`` is the chip),
    and ``env`` for ``TF_ENABLE_ONEDNN_OPTS``.
    """
    chosen = _framework(framework)
    if device not in (None, "cpu", "gpu"):
        raise ConfigError(f"device must be 'cpu', 'gpu' or None, got {device!r}")
    if compute_capability is not None and device != "cpu":
        capability = (
            compute_capability
            if isinstance(compute_capability, str)
            else "{}.{}".format(*compute_capability)
        )
        report = _nvidia(gpu_name or "", capability, chosen)
        return _with(report, "given compute capability")
    if device != "cpu":
        gpu = _detected_gpu(device, chosen, gpu_name)
        if gpu is not None:
            return gpu
    return _cpu_support(chosen, cpuinfo, cpu_flags, cpu_name, system, machine, env)


def _detected_gpu(device: str | None, chosen: str, gpu_name: str | None) -> SupportReport | None:
    """The report for the GPU the framework (or nvidia-smi) finds; None to judge the CPU.

    Raises ConfigError when ``device`` is ``"gpu"`` and none is found."""
    found: tuple[str, str] | None = None
    detected_by = ""
    cpu_only = _tensorflow_is_cpu_only() if chosen == "tensorflow" else _torch_is_cpu_only()
    if chosen == "tensorflow" and "tensorflow" in sys.modules:
        found, detected_by = _tensorflow_gpu(), "TensorFlow"
    elif chosen == "torch" and "torch" in sys.modules:
        found, detected_by = _torch_gpu(), "PyTorch"
    if found is None and (device == "gpu" or not cpu_only) and detected_by != "TensorFlow":
        found, detected_by = _nvidia_smi(), "nvidia-smi"
    if found is not None:
        return _with(_nvidia(gpu_name or found[0], found[1], chosen), detected_by)
    if device == "gpu":
        raise ConfigError(
            f"no NVIDIA GPU found ({_LABELS[chosen]} lists none, or nvidia-smi is missing "
            "or failed); use device='cpu'"
        )
    return None


def _cpu_support(
    chosen: str,
    cpuinfo: str | os.PathLike[str],
    cpu_flags: Iterable[str] | None,
    cpu_name: str | None,
    system: str | None,
    machine: str | None,
    env: Mapping[str, str] | None,
) -> SupportReport:
    """The report for this machine's CPU, or the one ``support()``'s arguments describe."""
    system = system if system is not None else platform.system()
    machine = (machine if machine is not None else platform.machine()).lower()
    if system == "Darwin" and machine in ("arm64", "aarch64"):
        chip = cpu_name if cpu_name is not None else _apple_chip()
        return _with(_apple(chip, chosen), "platform")
    name, flags = read_cpuinfo(cpuinfo)
    if cpu_flags is not None:
        flags = frozenset(cpu_flags)
    name = cpu_name if cpu_name is not None else name
    source = str(cpuinfo) if cpu_flags is None else "given flags"
    if machine in ("aarch64", "arm64"):
        return _with(_aarch64(name, flags, chosen), source)
    if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
        report = _x86(name, flags, os.environ if env is None else env, chosen)
        return _with(report, source)
    unknown = "not a CPU greenprec knows (x86-64, aarch64, Apple silicon)"
    return SupportReport(
        device="cpu",
        name=name or machine or "unknown CPU",
        platform=machine or "unknown",
        fp16=DtypeSupport("float16", "mixed", False, False, unknown),
        bf16=DtypeSupport("bfloat16", "bf16", False, False, unknown),
        tf32=_cpu_tf32(),
        detected_by="platform",
        framework=chosen,
    )


def _with(report: SupportReport, detected_by: str) -> SupportReport:
    return SupportReport(**{**report.__dict__, "detected_by": detected_by})


def emulation_warnings(
    policies: Iterable[str | Policy],
    report: SupportReport | None = None,
    *,
    framework: str = "tensorflow",
) -> list[str]:
    """One line per compared policy that will not run natively on ``report``'s device.

    ``report`` defaults to :func:`support` for this machine and ``framework``; fp32 never gets
    a line. TF32 where there is none is not emulated but ignored: its line says it runs as fp32.
    """
    report = support(framework=framework) if report is None else report
    lines: list[str] = []
    seen: set[str] = set()
    for item in policies:
        chosen = resolve_policy(item)
        verdict = report.for_policy(chosen)
        if verdict is None or verdict.native or chosen.name in seen:
            continue
        seen.add(chosen.name)
        if chosen.name == "tf32":
            lines.append(
                f"tf32 (tensorfloat32) has no effect on this {report.device.upper()} "
                f"({verdict.reason}): it runs as fp32"
            )
            continue
        how = "not accelerated" if verdict.hardware else "emulated"
        lines.append(
            f"{chosen.name} ({verdict.dtype}) is {how} on this {report.device.upper()} "
            f"({verdict.reason}): expect it to be slower and use more energy than fp32"
        )
    return lines
