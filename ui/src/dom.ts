// Small DOM helpers shared by the views.

export function must<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`missing element #${id}`);
  return e as T;
}

export function el(tag: string, cls: string, text = ""): HTMLElement {
  const e = document.createElement(tag);
  e.className = cls;
  if (text !== "") e.textContent = text;
  return e;
}

/** Writes only when the text changed: a DOM write invalidates layout even when equal. */
export function setText(e: HTMLElement, text: string): void {
  if (e.textContent !== text) e.textContent = text;
}

export function testid<T extends HTMLElement>(e: T, id: string): T {
  e.dataset["testid"] = id;
  return e;
}

/** Sets `hidden` only when it changes: every attribute write invalidates style, and the
 *  views re-apply their state twice a second. */
export function setHidden(e: HTMLElement, hidden: boolean): void {
  if (e.hidden !== hidden) e.hidden = hidden;
}

/** Sets (or, with null, removes) a data attribute only when it changes. */
export function setData(e: HTMLElement, key: string, value: string | null): void {
  if ((e.dataset[key] ?? null) === value) return;
  if (value === null) delete e.dataset[key];
  else e.dataset[key] = value;
}
