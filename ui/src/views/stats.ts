// Unit statistics: the unit's alarm burden for the charge nurse (and every nurse), over the
// last 1, 7 or 30 days. The report page (key figures and charts) is the same SVG the console
// writes; the tables and the limit review are drawn here. A suggestion is applied only by a
// charge nurse, through the station's audited limit change.

import { el, must, setText, testid } from "../dom";
import { asIpcError, ipc } from "../ipc";
import type { LimitReview } from "../gen/LimitReview";
import type { UnitStatistics } from "../gen/UnitStatistics";
import { refusal } from "../session";
import { fmtDuration, fmtShare, fmtSpread, replayCaveat, suggestions } from "../stats";
import { state } from "../state";
import { notice } from "./notice";
import { openSessionDialog } from "./session";

let days = 1;

function table(head: string[], rows: (string | HTMLElement)[][], id: string): HTMLElement {
  const t = testid(el("table", ""), id);
  const hr = el("tr", "");
  for (const h of head) hr.append(el("th", "", h));
  t.append(hr);
  for (const r of rows) {
    const tr = el("tr", "");
    for (const c of r) {
      const td = el("td", "");
      if (typeof c === "string") td.textContent = c;
      else td.append(c);
      tr.append(td);
    }
    t.append(tr);
  }
  return t;
}

export async function openStats(d: number = days): Promise<void> {
  days = d;
  must<HTMLElement>("panel").hidden = true;
  const sec = must<HTMLElement>("stats");
  sec.hidden = false;
  sec.style.top = `${must<HTMLElement>("alarm-bar").getBoundingClientRect().bottom}px`;
  setText(must("stats-title"), `Unit statistics — last ${days === 1 ? "24 hours" : `${days} days`}`);
  for (const b of must<HTMLElement>("stats-ranges").querySelectorAll("button")) b.classList.toggle("on", b.dataset["days"] === String(days));
  const body = must<HTMLElement>("stats-body");
  body.replaceChildren(el("p", "muted", "Computing…"));
  try {
    render(await ipc.unitStatistics(days));
  } catch (e) {
    const err = asIpcError(e);
    const r = refusal(err.code, err.message);
    body.replaceChildren(testid(el("p", "refusal", r.text), "stats-refusal"));
    if (r.focus !== null) openSessionDialog(r.focus);
  }
}

function render(u: UnitStatistics): void {
  const s = u.report.stats;
  const body = must<HTMLElement>("stats-body");
  // A data: URL, which the window's content security policy allows for images (blob: it
  // does not); an <img> also keeps the SVG's own markup out of the page.
  const img = testid(el("img", "stats-report"), "stats-report") as HTMLImageElement;
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(u.svg)}`;
  img.alt = "Alarm burden report: key figures, audible alarms per bed per day, floods, time to acknowledge";
  const beds = table(
    ["Bed", "Alarms", "Audible / day", "High", "Medium", "Low", "Technical", "Self-limiting", "Floods", "Audio paused", "Alarm paused"],
    s.per_bed.map((b) => {
      const f = b.figures;
      return [b.bed, String(f.alarms), f.audible_per_bed_day.toFixed(1), String(f.high), String(f.medium), String(f.low), String(f.technical), String(f.self_limiting), String(f.floods), fmtShare(f.audio_paused_share), fmtShare(f.alarm_paused_share)];
    }),
    "stats-beds",
  );
  const response = table(
    ["Priority", "Alarms", "To acknowledge", "To resolve", "Never acknowledged"],
    s.response.map((p) => [p.priority, String(p.alarms), fmtSpread(p.to_acknowledge), fmtSpread(p.to_resolve), String(p.never_acknowledged)]),
    "stats-response",
  );
  const conditions = table(
    ["Bed", "Condition", "Kind", "Alarms", "Audible", "Self-limiting", "Median to acknowledge"],
    s.per_condition.slice(0, 12).map((c) => [c.bed ?? "station", c.label, c.kind, String(c.alarms), String(c.audible), String(c.self_limiting), fmtDuration(c.median_ack_ms)]),
    "stats-conditions",
  );
  const causes = s.technical_causes.length === 0 ? "none" : s.technical_causes.map((c) => `${c.cause} ${c.alarms}`).join(" · ");
  // Two columns on a station screen: the report page beside the tables and the review.
  const side = el("div", "stats-side");
  side.append(
    el("h3", "", "Limit review"),
    reviews(u.report.reviews),
    el("h3", "", "By bed"),
    beds,
    el("h3", "", "Response times by priority (at onset)"),
    response,
    el("h3", "", "Most frequent conditions"),
    conditions,
    el("p", "", `Technical alarms by cause: ${causes}`),
  );
  body.replaceChildren(img, side);
}

function reviews(list: LimitReview[]): HTMLElement {
  const box = testid(el("div", "stats-reviews"), "stats-reviews");
  if (list.length === 0) {
    box.append(el("p", "muted", "No limit alarms in the period."));
    return box;
  }
  const canApply = state.session?.role === "charge_nurse" && !state.session.locked;
  box.append(
    el(
      "p",
      "muted",
      canApply
        ? "What each change would have done over the period (the alarm engine replayed over the stored values). Nothing changes until you apply one."
        : "What each change would have done over the period. Limits are changed by a charge nurse.",
    ),
  );
  for (const r of list) {
    const head = `${r.bed} · ${r.rule.label} ${r.rule.direction === "low" ? "<" : ">"} ${r.rule.threshold} for ${r.rule.delay_ms / 1000} s: ${r.live_alarms} alarms` + (r.triggers.median !== null ? ` (values ${r.triggers.min}–${r.triggers.max}, median ${r.triggers.median})` : "");
    box.append(el("h4", "", head));
    const caveat = replayCaveat(r);
    if (caveat !== null) box.append(el("p", "warn", caveat));
    const rows = suggestions(r).map((s, i) => {
      const cell: (string | HTMLElement)[] = [s.change, String(s.alarms), s.delta];
      if (canApply && s.fewer) {
        const b = testid(el("button", "", "Apply"), `apply-${r.bed}-${r.rule.id}-${i}`);
        const alt = r.alternatives[i];
        if (alt !== undefined) b.addEventListener("click", () => void apply(r.bed, alt.rule, s.change));
        cell.push(b);
      } else cell.push("");
      return cell;
    });
    box.append(table(["Change", "Alarms", "Against now", ""], rows, `review-${r.bed}-${r.rule.id}`));
  }
  return box;
}

/** The existing audited limit change, with the one rule replaced. */
async function apply(bed: string, rule: LimitReview["rule"], change: string): Promise<void> {
  try {
    const rules = await ipc.limits(bed);
    await ipc.setLimits(bed, rules.map((x) => (x.id === rule.id ? rule : x)));
    notice(`${bed}: ${rule.label} ${change} applied`);
    await openStats(days);
  } catch (e) {
    const err = asIpcError(e);
    const r = refusal(err.code, err.message);
    notice(r.text);
    if (r.focus !== null) openSessionDialog(r.focus);
  }
}

export function initStats(): void {
  must("unit-stats").addEventListener("click", () => void openStats());
  must("stats-close").addEventListener("click", () => {
    must<HTMLElement>("stats").hidden = true;
  });
  const ranges = must<HTMLElement>("stats-ranges");
  for (const d of [1, 7, 30]) {
    const b = testid(el("button", "", d === 1 ? "24 h" : `${d} d`), `stats-${d}d`);
    b.dataset["days"] = String(d);
    b.addEventListener("click", () => void openStats(d));
    ranges.append(b);
  }
}
