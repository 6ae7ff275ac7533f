// Who acts at this window: the header's account line and buttons, the sign-in and unlock
// dialog, and `act`, which runs a command as whoever is signed in and explains a refusal.
// The core keeps the session and decides every permission; without signing in the window
// still shows every bed and alarm.

import { must, setHidden, setText } from "../dom";
import { asIpcError, ipc } from "../ipc";
import { refusal, sessionText, type Session } from "../session";
import { state } from "../state";
import { clearNotice, notice } from "./notice";

type DialogMode = "signin" | "unlock";

function dialog(): HTMLDialogElement {
  return must<HTMLDialogElement>("session-dialog");
}

/** Opens the dialog on the sign-in or the unlock form, with its first field focused. */
export function openSessionDialog(mode: DialogMode): void {
  const d = dialog();
  must<HTMLElement>("signin").hidden = mode !== "signin";
  must<HTMLElement>("unlock").hidden = mode !== "unlock";
  setText(must("session-dialog-title"), mode === "signin" ? "Sign in" : `Unlock: ${state.session?.display_name ?? ""}`);
  if (!d.open) d.showModal();
  must<HTMLInputElement>(mode === "signin" ? "signin-user" : "unlock-secret").focus();
}

function closeDialog(): void {
  const d = dialog();
  if (d.open) d.close();
  must<HTMLFormElement>("signin").reset();
  must<HTMLFormElement>("unlock").reset();
  setText(must("session-error"), "");
}

/** Runs a command as whoever is signed in; a refusal is shown with the core's reason and,
 *  when signing in or unlocking would help, opens that dialog. */
export async function act(call: () => Promise<unknown>): Promise<boolean> {
  try {
    await call();
    clearNotice(); // a refusal shown a moment ago no longer applies
    await state.refresh();
    return true;
  } catch (e) {
    const err = asIpcError(e);
    const r = refusal(err.code, err.message);
    notice(r.text);
    if (r.focus !== null) openSessionDialog(r.focus);
    return false;
  }
}

export function renderAccount(s: Session | null): void {
  state.session = s;
  const who = must<HTMLElement>("session-text");
  setText(who, sessionText(s));
  if (who.title !== sessionText(s)) who.title = sessionText(s);
  setHidden(must("signin-open"), s !== null);
  setHidden(must("unlock-open"), s === null || !s.locked);
  setHidden(must("lock"), s === null || s.locked);
  setHidden(must("signout"), s === null);
  document.body.classList.toggle("locked", s?.locked === true);
}

async function sessionCall(call: () => Promise<Session | null>): Promise<void> {
  try {
    renderAccount(await call());
    closeDialog();
  } catch (e) {
    const err = asIpcError(e);
    if (dialog().open) setText(must("session-error"), err.message);
    else notice(err.message);
  }
  await state.refresh();
}

export function initSession(): void {
  must<HTMLFormElement>("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const username = must<HTMLInputElement>("signin-user").value.trim();
    const secret = must<HTMLInputElement>("signin-secret").value;
    void sessionCall(() => ipc.login(username, secret));
  });
  must<HTMLFormElement>("unlock").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const secret = must<HTMLInputElement>("unlock-secret").value;
    void sessionCall(() => ipc.unlock(secret));
  });
  for (const id of ["signin-cancel", "unlock-cancel"]) must(id).addEventListener("click", closeDialog);
  must("signin-open").addEventListener("click", () => openSessionDialog("signin"));
  must("unlock-open").addEventListener("click", () => openSessionDialog("unlock"));
  must("lock").addEventListener("click", () => void sessionCall(async () => (await ipc.lock(), state.session && { ...state.session, locked: true })));
  must("signout").addEventListener("click", () => void sessionCall(async () => (await ipc.logout(), null)));

  // Activity at the window postpones auto-lock; at most one call per 5 s.
  let lastTouch = 0;
  for (const type of ["keydown", "pointerdown"]) {
    window.addEventListener(type, () => {
      const now = Date.now();
      const s = state.session;
      if (s === null || s.locked || now - lastTouch < 5000) return;
      lastTouch = now;
      void ipc.touch().catch(() => undefined);
    });
  }
}
