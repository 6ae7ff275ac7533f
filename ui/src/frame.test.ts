import { describe, expect, it } from "vitest";
import { decodeFrame, FrameError, TraceKind } from "./frame";
import golden from "./gen/live-frame.golden.bin?inline";

function buildFrame(traces: { bed: number; kind: number; rateMhz: number; samples: number[] }[]): ArrayBuffer {
  const size = 20 + traces.reduce((n, t) => n + 12 + 4 * t.samples.length, 0);
  const buf = new ArrayBuffer(size);
  const v = new DataView(buf);
  "WWL1".split("").forEach((c, i) => v.setUint8(i, c.charCodeAt(0)));
  v.setUint32(4, 7, true);
  v.setFloat64(8, 1_763_701_200_000, true);
  v.setUint16(16, traces.length, true);
  let at = 20;
  for (const t of traces) {
    v.setUint16(at, t.bed, true);
    v.setUint8(at + 2, t.kind);
    v.setUint32(at + 4, t.rateMhz, true);
    v.setUint32(at + 8, t.samples.length, true);
    t.samples.forEach((s, i) => v.setFloat32(at + 12 + 4 * i, s, true));
    at += 12 + 4 * t.samples.length;
  }
  return buf;
}

describe("decodeFrame", () => {
  it("reads header and every trace", () => {
    const f = decodeFrame(
      buildFrame([
        { bed: 2, kind: 0, rateMhz: 250_000, samples: [0.5, -0.25, 1] },
        { bed: 15, kind: 2, rateMhz: 62_500, samples: [0.125] },
      ]),
    );
    expect(f.seq).toBe(7);
    expect(f.stationTimeMs).toBe(1_763_701_200_000);
    expect(f.traces).toHaveLength(2);
    expect(f.traces[0]?.bed).toBe(2);
    expect(f.traces[0]?.kind).toBe(TraceKind.Ecg);
    expect(f.traces[0]?.rateHz).toBe(250);
    expect(Array.from(f.traces[0]?.samples ?? [])).toEqual([0.5, -0.25, 1]);
    expect(f.traces[1]?.rateHz).toBe(62.5);
  });

  it("accepts an empty frame", () => {
    expect(decodeFrame(buildFrame([])).traces).toEqual([]);
  });

  it("rejects truncated and foreign buffers with a reason", () => {
    const good = buildFrame([{ bed: 0, kind: 0, rateMhz: 250_000, samples: [1, 2, 3] }]);
    expect(() => decodeFrame(good.slice(0, 10))).toThrow(FrameError);
    expect(() => decodeFrame(good.slice(0, good.byteLength - 4))).toThrow(/past the end/);
    const bad = good.slice(0);
    new DataView(bad).setUint8(0, 88);
    expect(() => decodeFrame(bad)).toThrow(/bad magic/);
  });
});

describe("the Rust-written golden frame", () => {
  // Written by ward-core's live.rs test `export_bindings_live_frame_golden`; `make lint`
  // fails when the committed file is not what the Rust encoder writes today.
  it("decodes to what the Rust test encoded", () => {
    // Vite inlines the file as a base64 data URL: the same bytes in any test environment.
    const b64 = golden.slice(golden.indexOf(",") + 1);
    const f = decodeFrame(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
    expect(f.seq).toBe(2);
    expect(f.stationTimeMs).toBe(1_764_806_400_123);
    expect(f.traces.map((t) => [t.bed, t.kind, t.rateHz, [...t.samples]])).toEqual([
      [0, TraceKind.Ecg, 250, [-1, 0, 1, -2]],
      [3, TraceKind.Pleth, 125, [-0.5, 0.5]],
      [3, TraceKind.Resp, 62.5, [2]],
    ]);
  });
});
