"""Why a zone's points do not make a simple polygon, named at the point where it goes wrong,
so that a page can put the error on that point (shapely's own explanation names a
coordinate only)."""

from __future__ import annotations

from collections.abc import Sequence

from shapely.geometry import LineString, MultiPoint

Point = tuple[float, float]


def xy(p: Point) -> str:
    """A point as people read it: `(0.412, 0.33)`, `(812, 400)`."""
    return f"({round(p[0], 3):g}, {round(p[1], 3):g})"


def fault(points: Sequence[Point]) -> tuple[int, str] | None:
    """The first thing that keeps `points` (3 or more, in drawing order, the polygon
    closing from the last back to the first) from being a simple polygon with an area, as
    (index of the point it is at, message); None when they make one.

    In order: a point given twice (at the second); all points on one line (at the last);
    two edges that meet other than at their shared corner, found edge by edge in drawing
    order (at the first point of the later edge; an edge that turns straight back over the
    one before it, at the corner they share)."""
    seen: dict[Point, int] = {}
    for j, p in enumerate(points):
        if p in seen:
            return j, f"point {j} repeats point {seen[p]} {xy(p)}: give each corner once (the polygon closes itself)"
        seen[p] = j
    n = len(points)
    if MultiPoint(points).convex_hull.area <= 0:
        return n - 1, f"points 0 to {n - 1} lie on one line: the polygon encloses no area"
    edges = [LineString([points[k], points[(k + 1) % n]]) for k in range(n)]
    for j in range(1, n):
        for i in range(j):
            meet = edges[i].intersection(edges[j])
            if meet.is_empty:
                continue
            if j == i + 1 or (i, j) == (0, n - 1):  # neighbours: they share one corner
                if meet.geom_type != "Point":
                    corner = j if j == i + 1 else 0
                    return corner, f"the polygon turns back on itself at point {corner}: the edges either side of it overlap"
                continue
            if meet.geom_type != "Point":
                how = "overlaps"
            else:
                how = "crosses" if edges[i].crosses(edges[j]) else "touches"
            at = meet.representative_point()
            return j, (
                f"the edge from point {j} to point {(j + 1) % n} {how} the edge from point {i} "
                f"to point {i + 1} at {xy((at.x, at.y))}"
            )
    return None
