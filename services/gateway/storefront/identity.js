// Who is buying: the shop's buyer JWT, handed over by the host page (docs/frontend.md, "Passing identity"):
//   1. a URL fragment `#token=<jwt>` (read once, then removed from the address bar and history),
//   2. `window.flashsaleToken`, set by a host page that serves these files itself,
//   3. a message {type: "flashsale:token", token} posted by the page that frames this one (only origins
//      allowed by the Content-Security-Policy's frame-ancestors can frame it),
// or, in development mode only, the sign-in form. The token is kept for the tab (sessionStorage).

import { devToken } from "./api.js";

const KEY = "flashsale.token";
const listeners = [];
let token = null;

function claims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

function set(next) {
  const c = next ? claims(next) : null;
  if (next && (!c || typeof c.sub !== "string")) return false;
  token = next;
  if (next) sessionStorage.setItem(KEY, next);
  else sessionStorage.removeItem(KEY);
  listeners.forEach((fn) => fn(current()));
  return true;
}

/** {token, user} or null. An expired token counts as none. */
export function current() {
  const c = token ? claims(token) : null;
  if (!c || (c.exp && c.exp * 1000 < Date.now())) return null;
  return { token, user: c.sub };
}

export function onChange(fn) {
  listeners.push(fn);
}

export function signOut() {
  set(null);
}

export const devMode = document.querySelector('meta[name="flashsale-dev"]')?.content === "on";

/** Development sign-in: a token for `name` from the gateway's development endpoint. */
export async function signIn(name) {
  const answer = await devToken(name);
  if (answer.ok) set(answer.data.token);
  return answer;
}

export function start() {
  const fragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fragment) history.replaceState(null, "", location.pathname + location.search);
  const initial = fragment ?? window.flashsaleToken ?? sessionStorage.getItem(KEY);
  if (initial) set(initial);
  window.addEventListener("message", (e) => {
    if (e.source !== window.parent || e.source === window) return;
    if (e.data?.type === "flashsale:token" && typeof e.data.token === "string") set(e.data.token);
  });
  if (window.parent !== window) window.parent.postMessage({ type: "flashsale:ready" }, "*");
}
