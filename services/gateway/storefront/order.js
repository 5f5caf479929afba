// The buyer's current order: its status until it is final (paid, expired, refund_required, rejected), the
// time left to pay, the shipping priority once paid, and Pay, which opens the payment provider's checkout.
// The order id is kept for the tab, so a reload (or the way back from the provider) shows it again.

import { checkout, getOrder } from "./api.js";
import { duration, orderStatus } from "./words.js";

const KEY = "flashsale.order";
const POLL_MS = 1000;
// A checkout opened before the deadline can still be paid after it: the order stays `expired` and the payment
// is owed back (`refund_required` on the order). The page keeps reading that long after the deadline.
const LATE_PAYMENT_MS = 10 * 60 * 1000;
const FINAL = new Set(["paid", "expired", "refund_required", "rejected"]);
let order = null; // the last answer of GET /api/v1/orders/{id}
let orderId = null;
let checkedOut = false; // this tab opened the provider's checkout for the order
let timer = null;
let tokenOf = () => null;
let say = () => {};

const $ = (id) => document.getElementById(id);
const hook = (name) => document.querySelector(`[data-test="${name}"]`);

/** What the buyer is told: an expired order whose late payment is owed back reads `refund_required`. */
function shownStatus() {
  if (order?.status === "expired" && order.refund_required) return "refund_required";
  return order?.status ?? "pending_payment";
}

/** Whether nothing more can change for the order (so reading it again is pointless). */
function settled() {
  const status = shownStatus();
  const lateWindow = Date.parse(order?.expires_at) + LATE_PAYMENT_MS;
  if (status === "expired" && checkedOut && Date.now() < lateWindow) return false;
  return FINAL.has(status);
}

function paint() {
  $("order").hidden = !orderId;
  if (!orderId) return;
  const status = shownStatus();
  hook("order-status").textContent = status;
  $("order-words").textContent = orderStatus(status);
  const pending = status === "pending_payment";
  const left = order ? Date.parse(order.expires_at) - Date.now() : 0;
  $("order-left").textContent = pending && order ? duration(left) : "–";
  $("order-left").hidden = $("order-left-label").hidden = !pending;
  $("order-amount").textContent = order?.amount ?? "";
  hook("shipping-priority").textContent = order?.shipping_priority == null ? "–" : `#${order.shipping_priority}`;
  hook("pay").hidden = !pending;
  hook("pay").disabled = !pending || left <= 0;
}

async function refresh() {
  const token = tokenOf();
  if (!orderId || !token) return;
  const answer = await getOrder(orderId, token);
  if (answer.ok) {
    order = answer.data;
    if (settled()) stop();
  } else if (answer.code === "ORDER_NOT_FOUND") {
    forget();
  }
  paint();
}

function stop() {
  clearInterval(timer);
  timer = null;
}

function forget() {
  stop();
  orderId = order = null;
  sessionStorage.removeItem(KEY);
}

/** Shows and follows `id` until its status is final; `first` (the 202's body) is shown until the order
 *  is read, so the time left to pay is there at once. */
export function show(id, first = null) {
  if (id !== orderId) {
    order = first;
    checkedOut = false;
  }
  orderId = id;
  sessionStorage.setItem(KEY, id);
  paint();
  refresh();
  if (!timer) timer = setInterval(() => (settled() ? paint() : refresh()), POLL_MS);
}

/** Whether the buyer holds an order that still waits for payment. */
export function pending() {
  return Boolean(orderId) && (order?.status ?? "pending_payment") === "pending_payment";
}

async function pay() {
  const button = hook("pay");
  button.disabled = true;
  // Opened now, while the click still counts as the buyer's gesture, so no pop-up blocker stops it.
  const tab = window.open("", "_blank");
  const answer = await checkout(orderId, tokenOf());
  if (answer.ok) {
    checkedOut = true;
    if (tab) {
      tab.opener = null;
      tab.location.href = answer.data.checkout_url;
    } else {
      location.assign(answer.data.checkout_url);
    }
  } else {
    tab?.close();
    say(answer);
    refresh();
  }
  paint();
}

/** `token()` gives the buyer's token; `message(answer)` shows a refusal. */
export function start(token, message) {
  tokenOf = token;
  say = message;
  hook("pay").addEventListener("click", pay);
  const kept = sessionStorage.getItem(KEY);
  if (kept) show(kept);
}

/** The buyer changed: the kept order is someone else's. */
export function reset() {
  forget();
  paint();
}
