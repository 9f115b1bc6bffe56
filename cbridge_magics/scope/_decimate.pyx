# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""What the scope sends for a view: at most a min and a max per pixel column, compiled.

    xs, ys = minmax(x, y, lo, hi, columns)   # float64 arrays, ascending x, <= 2 * columns + 2

A line drawn through each column's min and max (in the order they occur) covers the same pixels
as one drawn through every point, so a spike one sample wide stays visible at any zoom, and the
cost of a frame follows the screen, not the data rate. The nearest point outside each edge is
kept so the line runs to the edges of the view. NaN values are gaps: skipped.
"""

import numpy as np

from libc.math cimport isnan, floor, INFINITY


def minmax(const double[::1] x, const double[::1] y, double lo, double hi, Py_ssize_t columns):
    """The points of (x, y) that draw the view [lo, hi] at ``columns`` pixel columns."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} values and y {y.shape[0]}")
    if columns < 1 or not hi > lo:
        raise ValueError(f"a view needs columns >= 1 and hi > lo (got {columns}, {lo}..{hi})")
    cdef Py_ssize_t n = x.shape[0], i, c, k = 0
    mins = np.full(columns, INFINITY)
    maxs = np.full(columns, -INFINITY)
    at_min = np.full(columns, -1, np.intp)
    at_max = np.full(columns, -1, np.intp)
    cdef double[::1] mn = mins, mx = maxs
    cdef Py_ssize_t[::1] imn = at_min, imx = at_max
    cdef Py_ssize_t before = -1, after = -1  # the nearest points outside the view
    cdef double xv, yv, scale = columns / (hi - lo)
    with nogil:
        for i in range(n):
            xv, yv = x[i], y[i]
            if isnan(yv) or isnan(xv):
                continue
            if xv < lo:
                if before < 0 or xv >= x[before]:
                    before = i
                continue
            if xv > hi:
                if after < 0 or xv < x[after]:
                    after = i
                continue
            c = <Py_ssize_t>floor((xv - lo) * scale)
            if c >= columns:
                c = columns - 1
            if yv < mn[c]:
                mn[c], imn[c] = yv, i
            if yv > mx[c]:
                mx[c], imx[c] = yv, i
    # Each column's two points in the order they occur, so the line's shape is kept.
    out = np.empty(2 * columns + 2, np.intp)
    cdef Py_ssize_t[::1] o = out
    with nogil:
        if before >= 0:
            o[k] = before
            k += 1
        for c in range(columns):
            if imn[c] < 0:
                continue
            if imn[c] == imx[c]:
                o[k] = imn[c]
                k += 1
            elif x[imn[c]] < x[imx[c]] or (x[imn[c]] == x[imx[c]] and imn[c] < imx[c]):
                o[k], o[k + 1] = imn[c], imx[c]
                k += 2
            else:
                o[k], o[k + 1] = imx[c], imn[c]
                k += 2
        if after >= 0:
            o[k] = after
            k += 1
    picked = out[:k]
    return np.asarray(x)[picked], np.asarray(y)[picked]
