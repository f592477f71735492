"""Face alignment (68 iBUG points) with a sparse dynamic landmark graph (SDFL).

`from core import FaceAligner, Face` loads the inference API lazily (PEP 562), so `import core`
stays light (no torch, onnxruntime or mediapipe until they are used)."""

_LAZY = {"FaceAligner": "inference", "Face": "inference", "get_landmarks": "inference"}
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
