import { describe, expect, it } from "vitest";
import { fitGrid, MIN_BIG_NUMERIC_PX } from "./layout";

// The ward area of a 1920x1080 and a 1280x1024 screen below the header and alarm bar.
const SCREENS: [number, number][] = [
  [1920, 1080 - 80],
  [1280, 1024 - 80],
];

describe("fitGrid", () => {
  it("fits every count of beds from 1 to 64 without scrolling on both screens", () => {
    for (const [w, h] of SCREENS) {
      for (let n = 1; n <= 64; n++) {
        const f = fitGrid(n, w, h, 6);
        expect(f.columns * f.rows).toBeGreaterThanOrEqual(n);
        expect(f.columns * f.tileWidth + 6 * (f.columns + 1)).toBeLessThanOrEqual(w);
        expect(f.rows * f.tileHeight + 6 * (f.rows + 1)).toBeLessThanOrEqual(h);
        expect(f.bigNumeric).toBeGreaterThanOrEqual(MIN_BIG_NUMERIC_PX);
      }
    }
  });

  it("gives 64 beds on 1920x1080 an 8x8 grid and 16 beds a 4x4 one", () => {
    const f64 = fitGrid(64, 1920, 1000, 6);
    expect([f64.columns, f64.rows]).toEqual([8, 8]);
    expect(f64.tileHeight).toBeGreaterThan(100);
    const f16 = fitGrid(16, 1920, 1000, 6);
    expect([f16.columns, f16.rows]).toEqual([4, 4]);
    expect(f16.bigNumeric).toBeGreaterThan(f64.bigNumeric);
  });

  it("keeps a single bed wide rather than a full-screen square", () => {
    const f = fitGrid(1, 1920, 1000, 6);
    expect(f.columns).toBe(1);
    expect(f.bigNumeric).toBeLessThanOrEqual(72);
  });
});
