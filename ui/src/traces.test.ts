import { describe, expect, it } from "vitest";
import { TracePainter } from "./views/traces";

describe("TracePainter groups", () => {
  it("splits the grid into at most four groups of whole, consecutive rows", () => {
    for (let rows = 1; rows <= 64; rows++) {
      const groups = TracePainter.groupsFor(rows);
      expect(groups).toBe(Math.min(4, rows));
      const of = Array.from({ length: rows }, (_, r) => TracePainter.groupOf(r, rows, groups));
      // Every group is used, in order, and each is one run of consecutive rows: a frame's
      // repaint is one band of the screen.
      expect(new Set(of).size).toBe(groups);
      for (let r = 1; r < rows; r++) expect(of[r]! - of[r - 1]!).toBeGreaterThanOrEqual(0);
      expect(of[0]).toBe(0);
      expect(of[rows - 1]).toBe(groups - 1);
    }
  });

  it("gives 64 beds (8 rows) four groups of two rows", () => {
    expect(Array.from({ length: 8 }, (_, r) => TracePainter.groupOf(r, 8, 4))).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
  });
});
