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
    """``x86_64``, ``aarch64``, ``apple``, ``nvidia`` or ``amd`` (a GPU under ROCm)."""
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


# --- Apple silicon's GPU: PyTorch on "mps", TensorFlow with tensorflow-metal ------------------
_MPS_FP16_AUTOCAST = (2, 5)
"""PyTorch autocasts to float16 on ``mps`` from 2.5 (pytorch/pytorch#99272)."""
_MPS_BF16_AUTOCAST = (2, 6)
"""... and to bfloat16 from 2.6 (pytorch/pytorch#139390), on macOS 14 and later."""
_MPS_GRAD_SCALER = (2, 8)
"""``torch.amp.GradScaler("mps")``, the ``mixed`` policy's loss scaling, works from 2.8
(pytorch/pytorch#142397; Hugging Face Accelerate enables fp16 on MPS from that release)."""
_METAL_BF16_MACOS = (14, 0)
"""Metal (MPSGraph) has bfloat16 from macOS 14 Sonoma."""


def _release(text: str | None) -> tuple[int, int] | None:
    """``(major, minor)`` of a version such as ``2.6.0``, ``2.8.0+cpu`` or ``14.5``."""
    match = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _macos_release() -> str:
    """This Mac's macOS version (``14.5``); empty elsewhere."""
    return platform.mac_ver()[0]


def _installed(name: str) -> str | None:
    """The installed version of a distribution, read from its metadata (never imported)."""
    try:
        return distribution(name).version
    except PackageNotFoundError:
        return None


def _apple_generation(chip: str) -> int | None:
    match = re.search(r"\bM(\d+)\b", chip)
    return int(match.group(1)) if match else None


def _apple_gpu_tf32() -> DtypeSupport:
    return DtypeSupport(
        "tensorfloat32",
        "tf32",
        hardware=False,
        native=False,
        reason="TF32 is an NVIDIA tensor-core format; the Apple GPU computes float32",
    )


def _apple_gpu_bf16_hardware(chip: str, macos: tuple[int, int] | None) -> DtypeSupport | None:
    """The bfloat16 verdict when the chip or macOS rules it out; None when both allow it."""
    if macos is not None and macos < _METAL_BF16_MACOS:
        return DtypeSupport(
            "bfloat16",
            "bf16",
            False,
            False,
            f"macOS {macos[0]}.{macos[1]}: Metal has bfloat16 from macOS 14",
        )
    generation = _apple_generation(chip)
    if generation is None:
        return DtypeSupport(
            "bfloat16",
            "bf16",
            False,
            False,
            f"unknown Apple chip {chip!r}: M1's GPU computes bfloat16 through float32, "
            "M2 and later are not known to",
        )
    if generation < 2:
        return DtypeSupport(
            "bfloat16",
            "bf16",
            False,
            False,
            f"{chip}'s GPU has no bfloat16 arithmetic: it computes it through float32",
        )
    return None


def _apple_mps(
    chip: str, torch_version: str | None, macos: tuple[int, int] | None
) -> SupportReport:
    """PyTorch on the Apple GPU (``mps``) of ``chip``, with this PyTorch and macOS."""
    release = _release(torch_version)
    label = f"PyTorch {torch_version}" if torch_version else "PyTorch"
    if release is None:
        fp16 = DtypeSupport(
            "float16", "mixed", True, False, "PyTorch is not installed: the Apple GPU has float16"
        )
    elif release < _MPS_FP16_AUTOCAST:
        fp16 = DtypeSupport(
            "float16", "mixed", True, False, f"{label} has no autocast on 'mps' (2.5 and later)"
        )
    elif release < _MPS_GRAD_SCALER:
        fp16 = DtypeSupport(
            "float16",
            "mixed",
            True,
            False,
            f"{label} autocasts float16 on 'mps', but its GradScaler (the mixed policy's loss "
            "scaling) runs there only from 2.8",
        )
    else:
        fp16 = DtypeSupport(
            "float16", "mixed", True, True, f"{label} autocasts float16 on the Apple GPU ('mps')"
        )
    bf16 = _apple_gpu_bf16_hardware(chip, macos)
    if bf16 is None:
        if release is None or release < _MPS_BF16_AUTOCAST:
            why = "PyTorch is not installed" if release is None else f"{label} has none on 'mps'"
            bf16 = DtypeSupport(
                "bfloat16", "bf16", True, False, f"bfloat16 autocast needs PyTorch 2.6+ ({why})"
            )
        else:
            bf16 = DtypeSupport(
                "bfloat16", "bf16", True, True, f"{label} autocasts bfloat16 on the Apple GPU"
            )
    return SupportReport(
        device="gpu",
        name=f"{chip} GPU" if chip else "Apple GPU",
        platform="apple",
        fp16=fp16,
        bf16=bf16,
        tf32=_apple_gpu_tf32(),
        caveats=(
            "PyTorch on the Apple GPU ('mps'): not measured by greenprec; check with a short "
            "run, measure with the apple meter and pass sync=torch.mps.synchronize to "
            "greenprec.measure (its automatic sync covers CUDA only)",
        ),
        framework="torch",
    )


def _apple_metal(chip: str, plugin: str | None, macos: tuple[int, int] | None) -> SupportReport:
    """TensorFlow with tensorflow-metal on the Apple GPU of ``chip``."""
    label = f"tensorflow-metal {plugin}" if plugin else "TensorFlow's Metal plugin"
    bf16 = _apple_gpu_bf16_hardware(chip, macos) or DtypeSupport(
        "bfloat16",
        "bf16",
        True,
        False,
        f"{label}: Apple documents float16 mixed precision; greenprec knows of no bfloat16 "
        "training kernels in it",
    )
    return SupportReport(
        device="gpu",
        name=f"{chip} GPU" if chip else "Apple GPU",
        platform="apple",
        fp16=DtypeSupport(
            "float16", "mixed", True, True, f"{label} runs mixed_float16 on the Apple GPU"
        ),
        bf16=bf16,
        tf32=_apple_gpu_tf32(),
        caveats=(
            "TensorFlow with tensorflow-metal: not measured by greenprec; check with a short "
            "run and measure with the apple meter",
        ),
        framework="tensorflow",
    )


def _apple_gpu_support(
    device: str | None,
    chosen: str,
    cpu_name: str | None,
    system: str | None,
    machine: str | None,
) -> SupportReport | None:
    """The Apple GPU's report on Apple silicon when the framework trains there (or ``device`` is
    ``"gpu"``); None to go on as elsewhere (another machine, or the CPU).

    PyTorch computes on the CPU unless the model is moved to ``"mps"`` (and greenprec's adapter
    defaults to CUDA, else the CPU), so its GPU is judged only when asked for. TensorFlow with
    tensorflow-metal places its work on the Apple GPU by default, so that GPU is judged unless
    ``device`` is ``"cpu"``. Raises ConfigError when ``device`` is ``"gpu"`` and the framework
    has no Apple GPU here.
    """
    system = system if system is not None else platform.system()
    machine = (machine if machine is not None else platform.machine()).lower()
    if system != "Darwin" or machine not in ("arm64", "aarch64"):
        return None
    chip = cpu_name if cpu_name is not None else _apple_chip()
    macos = _release(_macos_release())
    if chosen == "torch":
        if device != "gpu":
            return None
        torch: Any = sys.modules.get("torch")
        detected_by = "platform"
        version = _installed("torch")
        if torch is not None:
            mps = getattr(getattr(torch, "backends", None), "mps", None)
            if mps is None or not mps.is_available():
                raise ConfigError(
                    "PyTorch sees no Apple GPU (torch.backends.mps.is_available() is False: "
                    "it needs macOS 12.3+ and an arm64 PyTorch); use device='cpu'"
                )
            detected_by = "PyTorch"
            version = str(getattr(torch, "__version__", "") or "") or version
        return _with(_apple_mps(chip, version, macos), detected_by)
    plugin = _installed("tensorflow-metal")
    sees_gpu: bool | None = None
    tf: Any = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            sees_gpu = bool(tf.config.list_physical_devices("GPU"))
        except Exception:  # a broken plugin must not break judging: the CPU is judged then
            sees_gpu = False
    if sees_gpu or (sees_gpu is None and plugin is not None):
        return _with(_apple_metal(chip, plugin, macos), "TensorFlow" if sees_gpu else "platform")
    if device == "gpu":
        raise ConfigError(
            "TensorFlow has no Apple GPU here: install Apple's Metal plugin (pip install "
            "tensorflow-metal); use device='cpu'"
        )
    return None


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


# --- AMD GPUs under ROCm, through PyTorch's ROCm build ----------------------------------------
_ROCM_BF16_FULL_RATE = re.compile(r"gfx9(?:0a|4[0-9a-f]|5[0-9a-f])")
"""CDNA 2 and later (MI200: gfx90a; MI300: gfx940-942; MI350: gfx950): bfloat16 matrix
instructions at the float16 rate."""
_ROCM_BF16_WMMA = re.compile(r"gfx1[12][0-9a-f]{2}")
"""RDNA 3 and 4 (gfx11xx, gfx12xx): WMMA instructions for bfloat16 as for float16."""


def _torch_rocm_gpu() -> tuple[str, str] | None:
    """(name, GCN architecture) of the current GPU of a ROCm build of PyTorch
    (``torch.version.hip`` set), once it has initialised the GPU; None on any other build.

    ROCm's PyTorch answers ``torch.cuda`` for AMD GPUs, and its ``get_device_capability`` gives
    the architecture's numbers (9.4 for gfx942), which must not be read as NVIDIA's compute
    capability (9.0 is Hopper, with TF32): the architecture is read instead."""
    torch: Any = sys.modules["torch"]
    if not getattr(getattr(torch, "version", None), "hip", None):
        return None
    if not torch.cuda.is_initialized():
        return None
    index = torch.cuda.current_device()
    arch = getattr(torch.cuda.get_device_properties(index), "gcnArchName", "") or ""
    return str(torch.cuda.get_device_name(index)), str(arch)


def _rocm(name: str, gcn_arch: str, framework: str = "torch") -> SupportReport:
    """An AMD GPU of architecture ``gcn_arch`` (``gfx90a``, or ROCm's full
    ``gfx90a:sramecc+:xnack-``) under ROCm."""
    arch = gcn_arch.strip().lower().split(":", 1)[0]
    label = arch or "an AMD GPU of unknown architecture"
    fp16 = DtypeSupport(
        "float16",
        "mixed",
        bool(arch),
        bool(arch),
        f"{arch} computes float16 natively (packed float16; matrix cores on CDNA, WMMA on "
        "RDNA 3 and later)"
        if arch
        else "PyTorch reports no GCN architecture (gcnArchName) for this GPU",
    )
    if _ROCM_BF16_FULL_RATE.fullmatch(arch):
        bf16 = DtypeSupport(
            "bfloat16", "bf16", True, True, f"{arch} has bfloat16 matrix cores (MI200 and later)"
        )
    elif arch == "gfx908":
        bf16 = DtypeSupport(
            "bfloat16",
            "bf16",
            True,
            True,
            "gfx908 (MI100) has bfloat16 matrix cores at half its float16 rate (MI200 and later "
            "run both at the same rate)",
        )
    elif _ROCM_BF16_WMMA.fullmatch(arch):
        bf16 = DtypeSupport(
            "bfloat16", "bf16", True, True, f"{arch} has bfloat16 WMMA instructions (RDNA 3+)"
        )
    else:
        bf16 = DtypeSupport(
            "bfloat16",
            "bf16",
            False,
            False,
            f"{label} has no bfloat16 arithmetic (MI100 and later, or RDNA 3 and later, have it)",
        )
    tf32 = DtypeSupport(
        "tensorfloat32",
        "tf32",
        False,
        False,
        "TF32 is an NVIDIA tensor-core format: under ROCm the tf32 setting leaves float32 "
        "matmuls and convolutions in float32",
    )
    shown = name or "AMD GPU"
    if arch and arch not in shown.lower():
        shown = f"{shown} ({arch})"
    return SupportReport(
        device="gpu",
        name=shown,
        platform="amd",
        fp16=fp16,
        bf16=bf16,
        tf32=tf32,
        framework=framework,
    )


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
    gcn_arch: str | None = None,
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
    and ``env`` for ``TF_ENABLE_ONEDNN_OPTS``. ``gcn_arch`` (``"gfx90a"``, ``"gfx942"``; implies
    an AMD GPU under ROCm) judges an AMD GPU as PyTorch's ROCm build reports it
    (``gcnArchName``); on a ROCm build of PyTorch that has initialised its GPU, that GPU is
    judged so by itself.

    On Apple silicon the GPU is the Apple GPU: PyTorch's ``mps`` when ``device="gpu"`` (PyTorch
    trains on the CPU unless moved there), TensorFlow's whenever tensorflow-metal is installed
    or TensorFlow lists a GPU (it then trains there by default).
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
    if gcn_arch is not None and device != "cpu":
        return _with(_rocm(gpu_name or "", gcn_arch, chosen), "given GCN architecture")
    if device != "cpu":
        apple = _apple_gpu_support(device, chosen, cpu_name, system, machine)
        if apple is not None:
            return apple
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
        rocm = _torch_rocm_gpu()
        if rocm is not None:
            return _with(_rocm(gpu_name or rocm[0], rocm[1], chosen), "PyTorch (ROCm)")
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
