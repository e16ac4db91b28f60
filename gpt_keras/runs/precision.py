"""Which arithmetic to train in, chosen from what the machine has, and why.

Mixed precision pays only where the hardware multiplies low-precision matrices faster than float32:
CPUs with bfloat16 matrix instructions (`avx512_bf16`, `amx_bf16`, used by TensorFlow through
oneDNN), GPUs of compute capability 8.0 and later (Ampere, Hopper: bfloat16 tensor cores) and older
GPUs with float16 tensor cores only (T4, V100), where float16's narrow range needs loss scaling.
Everywhere else float32 is both faster and the lecture's arithmetic.

`choose_precision` is pure: it takes `HardwareFacts` (what `detect_hardware` reads from the machine,
or facts a test injects) and returns a `PrecisionChoice` with the reason, which training prints and
records in the run. The weights and the softmax stay float32 in every choice: the loss takes the log
of the probabilities, and Adam's small updates would vanish in bfloat16 weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

FAST_BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
BFLOAT16_GPU_CAPABILITY = (8, 0)  # Ampere and later have bfloat16 tensor cores
# `--mixed-precision`: "auto" decides per machine; "bfloat16" and "float16" ask for one by name, on any
# machine (a float16 run on a CPU is slow, but it is the run a T4 makes); "off" is the lecture's float32;
# "on" (the older spelling) is mixed precision in whichever low precision the machine prefers.
MODES = ("auto", "off", "bfloat16", "float16", "on")
JIT_MODES = ("auto", "on", "off")
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class GPU:
    """One visible GPU: its name and CUDA compute capability (None when the backend does not say)."""

    name: str
    compute_capability: tuple[int, int] | None = None

    @property
    def has_fast_bfloat16(self) -> bool:
        return self.compute_capability is not None and tuple(self.compute_capability) >= BFLOAT16_GPU_CAPABILITY


@dataclasses.dataclass(frozen=True)
class HardwareFacts:
    """What the precision decision depends on: the CPU's flags, the GPUs and the Keras backend."""

    cpu_flags: frozenset[str] = frozenset()
    gpus: tuple[GPU, ...] = ()
    backend: str = "tensorflow"

    @property
    def cpu_bfloat16_flags(self) -> list[str]:
        return [flag for flag in FAST_BFLOAT16_CPU_FLAGS if flag in self.cpu_flags]


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """How a run computes.

    Attributes:
        policy: the Keras global dtype policy ("float32", "mixed_bfloat16" or "mixed_float16").
        output_dtype: the dtype policy of the output layer's 256 x vocabulary matmul (its softmax and
            the loss are float32 whatever this is).
        loss_scaling: wrap Adam in Keras' `LossScaleOptimizer` (float16 gradients underflow without it).
        jit: `jit_compile` for `model.compile` (True, False or "auto").
        reason: one sentence saying why, printed at the start of training.
    """

    policy: str
    output_dtype: str
    loss_scaling: bool
    jit: bool | str
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        jit = {True: "XLA", False: "no XLA", "auto": 'jit_compile="auto"'}[self.jit]
        output = "in float32" if self.output_dtype == "float32" else f"matmul {self.output_dtype}, softmax float32"
        scaling = ", loss scaling" if self.loss_scaling else ""
        return f"Precision: {self.policy} (output layer {output}{scaling}; {jit}): {self.reason}"


def choose_precision(facts: HardwareFacts, mixed_precision: str = "auto", jit_compile: str = "auto") -> PrecisionChoice:
    """The arithmetic for `facts`: float32 unless the hardware is faster at lower precision (or asked).

    Args:
        facts: the machine (see `detect_hardware`).
        mixed_precision: "auto" decides from the facts; "bfloat16" or "float16" (with loss scaling) asks
            for one on any machine; "on" forces mixed precision (bfloat16, or float16 with loss scaling
            on a GPU without fast bfloat16); "off" keeps float32 (the lecture).
        jit_compile: "on"/"off" force XLA on or off; "auto" turns it off on a CPU under TensorFlow, where
            XLA does not use the bfloat16 matrix units and was measured slower, and otherwise leaves
            it to Keras ("auto": XLA with a GPU, always on JAX, which runs op by op without it).

    Example:
        >>> choose_precision(HardwareFacts(gpus=(GPU("Tesla T4", (7, 5)),))).policy
        'mixed_float16'
    """
    if mixed_precision not in MODES:
        raise ValueError(f"mixed_precision must be one of {', '.join(MODES)}, got {mixed_precision!r}")
    if jit_compile not in JIT_MODES:
        raise ValueError(f"jit_compile must be one of {', '.join(JIT_MODES)}, got {jit_compile!r}")
    jit = _jit(facts, jit_compile)
    if mixed_precision == "off":
        return PrecisionChoice("float32", "float32", False, jit, "mixed precision off: float32, as in the lecture")
    if mixed_precision == "bfloat16":
        return PrecisionChoice("mixed_bfloat16", "mixed_bfloat16", False, jit, "bfloat16 asked for by name")
    if mixed_precision == "float16":
        return PrecisionChoice("mixed_float16", "mixed_float16", True, jit,
                               "float16 asked for by name: float16 with loss scaling")
    if facts.gpus:
        slow = [gpu for gpu in facts.gpus if not gpu.has_fast_bfloat16]
        if slow:
            return PrecisionChoice("mixed_float16", "mixed_float16", True, jit,
                                   f"{slow[0].name} (compute capability {_capability(slow[0])}) has float16 "
                                   "tensor cores but no fast bfloat16: float16 with loss scaling")
        return PrecisionChoice("mixed_bfloat16", "mixed_bfloat16", False, jit,
                               f"{facts.gpus[0].name} (compute capability {_capability(facts.gpus[0])}) has "
                               "bfloat16 tensor cores")
    if mixed_precision == "on":
        return PrecisionChoice("mixed_bfloat16", "mixed_bfloat16", False, jit, "mixed precision forced on (CPU)")
    if not facts.cpu_bfloat16_flags:
        return PrecisionChoice("float32", "float32", False, jit,
                               "no GPU and no bfloat16 matrix instructions on the CPU: float32 is fastest")
    if facts.backend != "tensorflow":
        return PrecisionChoice("float32", "float32", False, jit,
                               f"the CPU has {', '.join(facts.cpu_bfloat16_flags)}, but XLA on a CPU ({facts.backend} "
                               "backend) does not use them: float32")
    return PrecisionChoice("mixed_bfloat16", "mixed_bfloat16", False, jit,
                           f"the CPU has {', '.join(facts.cpu_bfloat16_flags)} (bfloat16 matrix instructions, "
                           "used by TensorFlow through oneDNN)")


def _jit(facts: HardwareFacts, jit_compile: str) -> bool | str:
    """XLA off on a CPU under TensorFlow; otherwise Keras' "auto" (on for JAX and with a GPU, off under a
    `tf.distribute` strategy, which Keras knows about and this function does not)."""
    if jit_compile != "auto":
        return jit_compile == "on"
    return "auto" if facts.gpus or facts.backend != "tensorflow" else False


def _capability(gpu: GPU) -> str:
    return "unknown" if gpu.compute_capability is None else ".".join(map(str, gpu.compute_capability))


def detect_hardware(backend: str | None = None) -> HardwareFacts:
    """The facts of this machine: CPU flags from /proc/cpuinfo, GPUs from the Keras backend."""
    import keras

    backend = backend or keras.backend.backend()
    return HardwareFacts(cpu_flags=frozenset(_cpu_flags()), gpus=tuple(_gpus(backend)), backend=backend)


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:  # not Linux: no flags known, so no bfloat16 assumed
        return []
    return next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])


def _gpus(backend: str) -> list[GPU]:
    try:
        if backend == "jax":
            import jax

            return [GPU(device.device_kind, _jax_capability(device)) for device in jax.devices() if device.platform == "gpu"]
        if backend == "tensorflow":
            import tensorflow as tf

            found = []
            for device in tf.config.list_physical_devices("GPU"):
                details = tf.config.experimental.get_device_details(device)
                found.append(GPU(details.get("device_name", device.name), details.get("compute_capability")))
            return found
        if backend == "torch":
            import torch

            return [GPU(torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
                    for i in range(torch.cuda.device_count())]
    except Exception:  # a backend that cannot list devices: assume none
        return []
    return []


def _jax_capability(device) -> tuple[int, int] | None:
    text = getattr(device, "compute_capability", None)
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def auto_here(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """What "auto" picks on this machine's CPU, read without importing a backend (for `--help`)."""
    flags = HardwareFacts(cpu_flags=frozenset(_cpu_flags(cpuinfo))).cpu_bfloat16_flags
    if flags:
        return f"bfloat16 here ({', '.join(flags)}; float32 on JAX), unless a GPU decides"
    return "float32 here (no bfloat16 instructions), unless a GPU decides"


def recorded_choice(record: dict) -> PrecisionChoice | None:
    """The choice a run saved in its precision.json, or None when the record is missing or unusable."""
    if not isinstance(record, dict) or record.get("policy") not in POLICIES:
        return None
    policy = record["policy"]
    output = record.get("output_dtype") if record.get("output_dtype") in POLICIES else policy
    jit = record.get("jit") if record.get("jit") in (True, False, "auto") else "auto"
    return PrecisionChoice(policy, output, policy == "mixed_float16", jit, "the run's own precision (precision.json)")
