import { describe, expect, it } from "vitest";
import { CODES, connectionLabel, formatLastSeen, formatNibp, formatTemp, formatValue, patientLine, type Numeric } from "./format";

const n = (code: number, value: number | null): Numeric => ({
  code,
  label: "",
  value,
  unit: 0,
  unit_label: "",
  ts_ms: 0,
});

describe("format", () => {
  it("formats values, missing values and temperature", () => {
    expect(formatValue(77)).toBe("77");
    expect(formatValue(null)).toBe("--");
    expect(formatValue(Number.NaN)).toBe("--");
    expect(formatTemp([n(CODES.TEMP_BODY, 37)])).toBe("37.0");
    expect(formatTemp([n(CODES.TEMP, 36.55)])).toBe("36.5");
    expect(formatTemp([])).toBe("--");
  });

  it("formats NIBP from its parts", () => {
    expect(formatNibp([n(CODES.NIBP_SYS, 120), n(CODES.NIBP_DIA, 80)])).toBe("120/80");
    expect(formatNibp([n(CODES.NIBP_SYS, 120)])).toBe("120/--");
  });

  it("says how long ago a device was seen", () => {
    expect(formatLastSeen(10_000, null)).toBe("never seen");
    expect(formatLastSeen(10_000, 9_800)).toBe("now");
    expect(formatLastSeen(10_000, 3_000)).toBe("7 s ago");
    expect(formatLastSeen(200_000, 0)).toBe("3 min ago");
    expect(connectionLabel("silent")).toBe("No data");
  });
});

describe("patientLine", () => {
  it("shows who is in the bed, or that nobody is", () => {
    expect(patientLine(null)).toBe("no patient admitted");
    expect(patientLine({ line: "DOE, Jane · MRN 1 · adult" })).toBe("DOE, Jane · MRN 1 · adult");
  });
});
