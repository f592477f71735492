"""MediaPipe Face Mesh (mp.solutions.face_mesh, 468 points) as a 68-point peer for the video
protocol, through a fixed 468 -> 68 index map.

The map (MESH_TO_IBUG68) is data-driven: for each iBUG point i, the mesh vertex j minimising the
median of |mesh_j - gt_i| / inter-ocular over faces68 *validation* faces (the split
core.data.train_val_split holds out of train; never test), with mesh run on the 512 px crops in
static-image mode. Refit with `python -m core.facemesh --fit` (prints the map and its residual).
Points with no vertex of their own on the mesh (the jaw line below the mesh's face oval on
turned faces) still get their nearest vertex: the residuals printed by --fit say how well each
point maps (numbers beside MESH_TO_IBUG68)."""
from __future__ import annotations

import argparse

import numpy as np

MESH_POINTS = 468
# fitted by `python -m core.facemesh --fit --faces 120` on faces68 train's validation split (seed 0,
# 120 faces): median residual / inter-ocular 4.6 % over the 68 points; jaw 5.8-9.3 %, brows 4.1-7.9 %,
# nose 2.0-4.7 %, eyes 2.1-3.5 %, mouth 2.4-4.5 % (part of it is the two conventions disagreeing)
MESH_TO_IBUG68 = np.array([
    127, 234, 177, 215, 172, 136, 149, 148, 152, 377, 378, 365, 367, 435, 366, 447, 356,  # jaw 0-16
    70, 63, 105, 65, 55, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 240, 97, 2, 326, 460,  # nose 27-35
    7, 159, 158, 155, 153, 144, 382, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 304, 291, 405, 314, 17, 84, 181,  # outer mouth 48-59
    62, 82, 12, 268, 292, 317, 14, 87], dtype=np.int64)  # inner mouth 60-67


class MeshAligner:
    """68 points per face from MediaPipe Face Mesh. video=True keeps mesh's own tracking between
    calls (static_image_mode=False); reset() starts a new video."""

    def __init__(self, video: bool = True, max_faces: int = 2, min_score: float = 0.5,
                 mapping: np.ndarray | None = None):
        import mediapipe as mp  # heavy import, only when used

        self._fm = mp.solutions.face_mesh
        self.video, self.max_faces, self.min_score = video, max_faces, min_score
        self.mapping = MESH_TO_IBUG68 if mapping is None else np.asarray(mapping, np.int64)
        if self.mapping.shape != (68,) or self.mapping.min() < 0 or self.mapping.max() >= MESH_POINTS:
            raise ValueError(f"mapping must be 68 indices into the {MESH_POINTS} mesh points")
        self._mesh = None
        self.reset()

    def reset(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
        self._mesh = self._fm.FaceMesh(static_image_mode=not self.video, max_num_faces=self.max_faces,
                                       refine_landmarks=False, min_detection_confidence=self.min_score,
                                       min_tracking_confidence=self.min_score)

    def mesh(self, rgb: np.ndarray) -> list[np.ndarray]:
        """(468, 2) pixel coordinates (centres at integers) per face."""
        h, w = rgb.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(rgb))
        out = []
        for lm in res.multi_face_landmarks or []:
            p = np.array([[q.x, q.y] for q in lm.landmark[:MESH_POINTS]], np.float64)
            out.append(p * [w, h] - 0.5)
        return out

    def predict(self, rgb: np.ndarray) -> list[np.ndarray]:
        """(68, 2) per face (iBUG order)."""
        return [m[self.mapping].astype(np.float32) for m in self.mesh(rgb)]

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


def fit_mesh_map(records, max_faces: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """(map (68,), median residual per point / inter-ocular (68,)) from labelled records."""
    from .data import read_image
    from .metrics import interocular

    mesh = MeshAligner(video=False, max_faces=1)
    errs = []  # (F, 68, 468)
    for r in records[:max_faces]:
        faces = mesh.mesh(read_image(r.image))
        if not faces:
            continue
        gt = np.asarray(r.landmarks, np.float64)
        d = np.linalg.norm(faces[0][None, :, :] - gt[:, None, :], axis=2) / interocular(gt[None])[0]
        errs.append(d)
    mesh.close()
    if not errs:
        raise ValueError("face mesh found no face in the records")
    med = np.median(np.stack(errs), axis=0)  # (68, 468)
    idx = med.argmin(1)
    return idx, med[np.arange(68), idx]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", action="store_true", help="fit the 468 -> 68 map on the validation split")
    ap.add_argument("--data", default=None, help="faces68 folder (default: DataConfig.root)")
    ap.add_argument("--faces", type=int, default=120)
    args = ap.parse_args(argv)
    if not args.fit:
        print(MESH_TO_IBUG68.tolist())
        return 0
    from .config import DataConfig
    from .data import train_val_split

    _, val = train_val_split(DataConfig(), args.data)
    idx, res = fit_mesh_map(val, args.faces)
    print("MESH_TO_IBUG68 =", idx.tolist())
    print("median residual / inter-ocular per point (%):", np.round(100 * res, 1).tolist())
    print(f"mean over points {100 * res.mean():.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
