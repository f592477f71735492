"""How many faces the app reports per image (FaceAligner max_faces) and how it says that some were
left out: the API / upload JSON gets "truncated": true and the status line a short note."""
from __future__ import annotations

from core.inference import DEFAULT_MAX_FACES

__all__ = ["DEFAULT_MAX_FACES", "truncation_fields", "truncation_note"]


def truncated(faces) -> bool:
    """True when the aligner left faces out (core.image_faces.FaceList.truncated)."""
    return bool(getattr(faces, "truncated", False))


def truncation_fields(faces) -> dict:
    """{"truncated": True} when faces were left out, else {} (the JSON stays as before)."""
    return {"truncated": True} if truncated(faces) else {}


def truncation_note(faces, max_faces: int | None) -> str:
    """Status-line suffix: '' or ' (more faces found: showing the N most confident; max_faces=N)'."""
    if not truncated(faces):
        return ""
    n = max_faces if max_faces else len(faces)
    return f" (more faces found: showing the {n} most confident; launch with --max-faces to change)"
