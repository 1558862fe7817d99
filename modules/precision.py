"""The Trainer's number formats, and whether this CPU computes bfloat16 natively.

Pure Python (no TensorFlow). ``modules.budget.precision_for`` picks one per run.

"mixed_bfloat16" trains the convolutions and dense layers in bfloat16 while every weight, the
optimizer and the softmax stay float32 (Keras' mixed-precision policy); the served model is a
float32 copy of the trained weights (``modules.model.float32_twin``), so serving, TFMA and any
machine that loads the SavedModel see exactly the architecture a float32 run exports.

It is worth it only where the CPU multiplies bfloat16 natively (x86 ``avx512_bf16`` or AMX; on
other CPUs oneDNN emulates it and is slower than float32), and where the convolutions dominate a
step: big data, trained at batch 128. So the default picks it from the CPU's flags and the
training split's size (the budget's batch-128 band). Measured here (AMD EPYC, 2 cores,
avx512_bf16; in-process, docs/training.md): all of Fashion-MNIST's 47,957-image split, 8 epochs,
fit 0.70x and 0.77x of float32's time, eval accuracy 0.9192 / 0.9178 against 0.9203 / 0.9197.
On 800 handwritten digits (batch 32) 0.82-0.93x for the same test accuracy, and on the
embedded digits no clear gain with MNIST test 0.802 / 0.791 against 0.808 / 0.811: small data
stay float32.
"""

from __future__ import annotations

PRECISIONS = ("float32", "mixed_bfloat16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo; the first found is named
CPUINFO = "/proc/cpuinfo"


def native_bfloat16(cpuinfo: str = CPUINFO) -> str | None:
    """The CPU flag that makes bfloat16 native here (``amx_bf16``, ``avx512_bf16``), or None
    (no such flag, or no ``flags`` line: other architectures and systems)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)
    except OSError:
        return None
    return None
