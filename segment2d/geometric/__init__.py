"""The weight-free default mask generator: regions of an RGB-D frame cut along depth jumps, concave creases
and colour edges, plus whole planes (floor, walls, table tops) as regions of their own.

Pipeline (at ~320 px wide, labels upsampled to the frame's size by nearest neighbour):
  1. subsample depth, fill small holes (from the neighbour of most similar colour), median-smooth,
     back-project, estimate normals;
  2. evidence: depth discontinuities (relative to z plus sensor noise), concave creases (a box standing on
     the floor; a box's own convex edges are ignored), colour gradients;
  3. overlapping hypotheses: level 0 cuts along depth jumps and strong concave creases; level 1 also along
     weak creases and colour edges; level 2 ("whole objects") cuts only along depth jumps and removes the
     structure planes, so a chair's back, seat and legs stay together. Each level's 4-connected components
     are grown back over the cut pixels (by distance to a planar neighbour's plane, else by depth step);
     level 0 also labels thin structures the cuts left without a seed (a pole: elongated leftovers in front
     of their surroundings);
     level-1 regions inside a small non-structure level-0 region (an object's parts) are not offered; a
     level-0 region hanging below an adjacent larger one (legs under a seat or top, in world height from the
     pose) is joined with it while the union stays compact, so the partition keeps the object whole;
  4. planes: least-squares planes per region; large planar regions are structure, coplanar ones are also
     offered united (a floor cut in two by a table), and adjacent non-structure level-0 regions joined by
     a crease are merged greedily by colour, every intermediate group offered (object parts);
  5. scores: the share of a region's outline that lies on evidence (a region bounded by real edges is a
     confident one) times a per-level weight; near-duplicates across levels removed; at most
     ``max_masks`` kept.
"""
from .config import GeometricConfig
from .generator import GeometricMaskGenerator
from .levels import LEVEL_COLOR, LEVEL_GEOMETRY, LEVEL_OBJECT, LEVEL_PART_UNION, LEVEL_PLANE_UNION

__all__ = ["GeometricConfig", "GeometricMaskGenerator", "LEVEL_COLOR", "LEVEL_GEOMETRY", "LEVEL_OBJECT",
           "LEVEL_PART_UNION", "LEVEL_PLANE_UNION"]
