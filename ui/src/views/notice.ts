// Transient notices (a refusal, "Saved …") and the standing banner (core unreachable, alarm
// driver down).

import { must } from "../dom";

let timer = 0;

export function notice(text: string): void {
  const n = must<HTMLElement>("notice");
  n.textContent = text;
  n.hidden = false;
  window.clearTimeout(timer);
  timer = window.setTimeout(() => (n.hidden = true), 6000);
}

export function clearNotice(): void {
  must<HTMLElement>("notice").hidden = true;
}

export function banner(text: string | null): void {
  const b = must<HTMLElement>("banner");
  b.hidden = text === null;
  b.textContent = text ?? "";
}
