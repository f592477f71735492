"""Sparse landmark neighbourhoods learned from data (SDFL): C = (|Cx| + |Cy|) / 2 with Cx, Cy the
Pearson correlations of the landmarks' x and y coordinates over a training set; each row keeps its
top k+1 entries (the landmark itself included)."""
from __future__ import annotations

import numpy as np


def correlation_matrix(landmarks: np.ndarray) -> np.ndarray:
    """(S, N, 2) shapes -> (N, N) C = (|corr(x)| + |corr(y)|) / 2."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[2] != 2 or landmarks.shape[0] < 3:
        raise ValueError(f"need (S>=3, N, 2) landmarks, got {landmarks.shape}")
    cx = np.corrcoef(landmarks[:, :, 0], rowvar=False)
    cy = np.corrcoef(landmarks[:, :, 1], rowvar=False)
    c = (np.abs(np.nan_to_num(cx)) + np.abs(np.nan_to_num(cy))) / 2.0
    np.fill_diagonal(c, 1.0)
    return c


def neighbourhood(landmarks: np.ndarray, k: int = 3) -> np.ndarray:
    """(N, N) binary matrix M: row i marks i and its k most correlated landmarks (directed)."""
    c = correlation_matrix(landmarks)
    n = c.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}], got {k}")
    c = c.copy()
    np.fill_diagonal(c, np.inf)  # self always first
    top = np.argsort(-c, axis=1, kind="stable")[:, : k + 1]
    m = np.zeros((n, n), dtype=np.float32)
    np.put_along_axis(m, top, 1.0, axis=1)
    return m
