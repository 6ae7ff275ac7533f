// The ward grid's geometry: how many columns, and how big each tile is, so every bed fits in
// the window without scrolling. Pure, tested in layout.test.ts; the grid view applies it.

/** The tile shape the layout aims for (width / height): three waveform bands beside a
 *  numerics column read best at about 2:1. Wider wastes the numerics' height; taller squeezes
 *  the sweep. */
export const TILE_ASPECT = 2.0;

/** HR and SpO2 never get smaller than this (CSS px, digit cap height about 0.7 of it).
 *  28 px gives digits about 20 px, 5.3 mm on a 23-24" 1080p panel: 16 arc-minutes (the
 *  ISO 9241-303 minimum character height) at about 1.1 m, the distance from the station
 *  chair to a screen on the desk or the wall behind it. At 64 beds on 1920x1080 the tiles are
 *  about 234x118 px and still hold it. */
export const MIN_BIG_NUMERIC_PX = 28;
/** And never larger: beyond this a few beds' numbers would dominate the screen. */
export const MAX_BIG_NUMERIC_PX = 72;

export interface GridFit {
  columns: number;
  rows: number;
  /** Tile size in CSS px. */
  tileWidth: number;
  tileHeight: number;
  /** Font size of HR and SpO2 in CSS px. */
  bigNumeric: number;
}

/**
 * The column count whose tiles are largest at the target aspect: for each count of columns
 * the tile is the cell size, and its usable size is the largest TILE_ASPECT rectangle inside
 * the cell. Every bed fits by construction (rows = ceil(beds / columns)).
 */
export function fitGrid(beds: number, width: number, height: number, gap: number): GridFit {
  const n = Math.max(1, Math.floor(beds));
  let best: GridFit | null = null;
  let bestScore = -1;
  for (let columns = 1; columns <= n; columns++) {
    const rows = Math.ceil(n / columns);
    // Fewer rows than needed would be the same layout with empty columns: skip duplicates.
    if (columns > 1 && Math.ceil(n / (columns - 1)) === rows) continue;
    const tileWidth = Math.floor((width - gap * (columns + 1)) / columns);
    const tileHeight = Math.floor((height - gap * (rows + 1)) / rows);
    if (tileWidth <= 0 || tileHeight <= 0) continue;
    const score = Math.min(tileWidth / TILE_ASPECT, tileHeight);
    if (score > bestScore) {
      bestScore = score;
      best = { columns, rows, tileWidth, tileHeight, bigNumeric: bigNumericPx(tileWidth, tileHeight) };
    }
  }
  return best ?? { columns: n, rows: 1, tileWidth: 0, tileHeight: 0, bigNumeric: MIN_BIG_NUMERIC_PX };
}

/** HR and SpO2 scale with the tile: a quarter of its height, bounded by the numerics
 *  column's width (a third of the tile holds three digits). */
export function bigNumericPx(tileWidth: number, tileHeight: number): number {
  const byHeight = tileHeight * 0.25;
  const byWidth = (tileWidth * 0.34) / 1.9; // three digits are about 1.9 em wide
  return Math.round(Math.max(MIN_BIG_NUMERIC_PX, Math.min(MAX_BIG_NUMERIC_PX, byHeight, byWidth)));
}
