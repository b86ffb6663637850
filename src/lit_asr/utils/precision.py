"""``trainer.precision=auto``: bf16-mixed where the hardware computes bfloat16 natively, float32 elsewhere.

"Natively" means a GPU that reports bf16 support, or a CPU with AVX512-BF16 or AMX (the instructions oneDNN's
bf16 kernels use). Elsewhere bf16 is emulated and slower than float32, so ``auto`` keeps float32 there.
"""

from __future__ import annotations

import torch

AUTO = "auto"


def native_bf16(accelerator: str) -> str | None:
    """What computes bfloat16 natively for ``accelerator`` (Lightning's name: auto, cpu, gpu, cuda), or None."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_bf16_supported() else None
    cpu = getattr(torch, "cpu", None)
    if cpu is not None and getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "CPU with AMX"
    if cpu is not None and getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "CPU with AVX512-BF16"
    return None


def resolve_precision(requested: str | int, accelerator: str = "auto") -> tuple[str | int, str | None]:
    """(the precision to give Lightning, why it was chosen); ``why`` is None when ``requested`` was not auto."""
    if str(requested) != AUTO:
        return requested, None
    hardware = native_bf16(str(accelerator))
    if hardware:
        return "bf16-mixed", f"precision=auto: bf16-mixed ({hardware})"
    return "32-true", "precision=auto: 32-true (no native bfloat16 on this device)"
