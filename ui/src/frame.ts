// Decoder for the station's binary live frame (layout documented in
// src-tauri/crates/ward-core/src/live.rs). Pure: no DOM, tested in frame.test.ts.

export const FRAME_MAGIC = "WWL1";
const HEADER_BYTES = 20;
const TRACE_HEADER_BYTES = 12;

export const enum TraceKind {
  Ecg = 0,
  Pleth = 1,
  Resp = 2,
}

export interface FrameTrace {
  bed: number;
  kind: TraceKind;
  rateHz: number;
  samples: Float32Array;
}

export interface LiveFrame {
  seq: number;
  stationTimeMs: number;
  traces: FrameTrace[];
}

export class FrameError extends Error {}

export function decodeFrame(buf: ArrayBuffer): LiveFrame {
  if (buf.byteLength < HEADER_BYTES) {
    throw new FrameError(`frame of ${buf.byteLength} bytes is shorter than its header`);
  }
  const view = new DataView(buf);
  const magic = String.fromCharCode(
    view.getUint8(0),
    view.getUint8(1),
    view.getUint8(2),
    view.getUint8(3),
  );
  if (magic !== FRAME_MAGIC) {
    throw new FrameError(`bad magic ${JSON.stringify(magic)}`);
  }
  const seq = view.getUint32(4, true);
  const stationTimeMs = view.getFloat64(8, true);
  const count = view.getUint16(16, true);
  const traces: FrameTrace[] = [];
  let at = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (at + TRACE_HEADER_BYTES > buf.byteLength) {
      throw new FrameError(`trace ${i} header runs past the end of the frame`);
    }
    const bed = view.getUint16(at, true);
    const kind = view.getUint8(at + 2) as TraceKind;
    const rateHz = view.getUint32(at + 4, true) / 1000;
    const n = view.getUint32(at + 8, true);
    const start = at + TRACE_HEADER_BYTES;
    if (start + 4 * n > buf.byteLength) {
      throw new FrameError(`trace ${i} samples run past the end of the frame`);
    }
    // Copy out of the frame so the frame buffer can be released.
    const samples = new Float32Array(buf.slice(start, start + 4 * n));
    traces.push({ bed, kind, rateHz, samples });
    at = start + 4 * n;
  }
  return { seq, stationTimeMs, traces };
}
