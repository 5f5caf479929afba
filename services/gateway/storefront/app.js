// The storefront's entry module: identity, the list of sales, Buy, the current order and the message line.

import { pressKey, reserve } from "./api.js";
import * as identity from "./identity.js";
import * as order from "./order.js";
import * as sales from "./sales.js";
import { refusal } from "./words.js";

const message = document.getElementById("message");
// Buy stays off at least this long after a press: the second click of a double click (an OS double-click
// interval is about 500 ms) never becomes a second reservation, however fast the first was answered.
const PRESS_HOLD_MS = 600;
let countdown = null;

/** Shows a refusal (an API answer) in words, its code in data-code, and counts its Retry-After down. */
function say(answer) {
  clearInterval(countdown);
  const until = Date.now() + (answer.retryAfter ?? 0) * 1000;
  const write = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    message.textContent = refusal(answer.code, left);
    if (left === 0) clearInterval(countdown);
  };
  message.dataset.code = answer.code;
  message.className = "";
  message.hidden = false;
  write();
  if (answer.retryAfter > 0) countdown = setInterval(write, 250);
}

function tell(text) {
  clearInterval(countdown);
  message.textContent = text;
  message.dataset.code = "";
  message.className = "ok";
  message.hidden = false;
}

async function buy(card) {
  const who = identity.current();
  if (!who) {
    say({ code: "UNAUTHORIZED" });
    return;
  }
  // Disabled before anything else: the second click of a double click lands on a disabled button.
  card.busy = true;
  sales.repaint(card);
  const pressed = Date.now();
  const answer = await reserve(card.sale.id, who.token, pressKey());
  if (answer.ok) {
    tell(`Reserved: ${card.sale.product_name}. Pay before the time runs out.`);
    order.show(answer.data.order_id, answer.data);
  } else {
    say(answer);
    if (answer.code === "LIMIT_EXCEEDED" && answer.orderId) order.show(answer.orderId);
    // The gateway's clock says the sale is over, whatever this tab's clock says: Buy stays off.
    if (answer.code === "SALE_ENDED") sales.ended(card);
  }
  // After a 429 or 503, Buy stays off until Retry-After has passed.
  const hold = Math.max((answer.retryAfter ?? 0) * 1000, PRESS_HOLD_MS - (Date.now() - pressed));
  setTimeout(() => {
    card.busy = false;
    sales.repaint(card);
  }, hold);
}

function showIdentity(who) {
  document.getElementById("who").textContent = who ? `Signed in as ${who.user}` : "Not signed in";
  // A framing shop learns whom the storefront took the token for (only origins allowed by frame-ancestors
  // can frame it, so the parent is the shop).
  if (window.parent !== window) window.parent.postMessage({ type: "flashsale:identity", user: who?.user ?? null }, "*");
  document.getElementById("sign-in").hidden = !identity.devMode || Boolean(who);
  sales.setSignedIn(Boolean(who));
}

function startSignIn() {
  const form = document.getElementById("sign-in-form");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = document.getElementById("sign-in-name").value.trim();
    const answer = await identity.signIn(name);
    if (!answer.ok) say(answer);
    else tell(`Welcome, ${name}.`);
  });
}

async function main() {
  identity.start();
  let last = identity.current()?.user;
  identity.onChange((who) => {
    if (who?.user !== last) order.reset();
    last = who?.user;
    showIdentity(who);
  });
  sales.start(buy);
  order.start(() => identity.current()?.token, say);
  startSignIn();
  showIdentity(identity.current());
  const first = await sales.load();
  if (!first.ok) say(first);
  // New sales appear without a reload.
  setInterval(sales.load, 15000);
}

main();
