// The list of sales: one card per sale, its countdown to the start, and its live counters from the sale's
// Server-Sent Events feed (GET /api/v1/sales/{id}/events). A browser allows about six connections per host,
// so only the first few sales get a feed; the others, and any sale whose feed fails for good, are re-read.

import { getSale, listSales } from "./api.js";
import { duration, saleStatus } from "./words.js";

const MAX_FEEDS = 4;
const POLL_MS = 2000;
const cards = new Map(); // sale id -> {el, sale, feed, poll}
let onBuy = () => {};
let signedIn = false;

function el(card, hook) {
  return card.el.querySelector(`[data-test="${hook}"]`);
}

/** The status the clock says, when the feed has not told yet (upcoming turns active at starts_at). */
function statusNow(sale) {
  const now = Date.now();
  if (sale.status === "upcoming" && Date.parse(sale.starts_at) <= now) return "active";
  if (sale.status !== "ended" && Date.parse(sale.ends_at) <= now) return "ended";
  return sale.status;
}

function paint(card) {
  const { sale } = card;
  const status = statusNow(sale);
  el(card, "remaining").textContent = String(sale.remaining);
  const left = Date.parse(sale.starts_at) - Date.now();
  card.el.querySelector(".starts").hidden = status !== "upcoming";
  if (status === "upcoming") el(card, "countdown").textContent = duration(left);
  el(card, "sale-status").textContent = saleStatus(status);
  card.el.classList.toggle("sold-out", status === "sold_out");
  card.el.classList.toggle("ended", status === "ended");
  const buy = el(card, "buy");
  const open = status === "active" && signedIn && !card.busy;
  buy.disabled = !open;
  buy.title = signedIn ? "" : "Sign in to buy";
}

function follow(card) {
  const feeds = [...cards.values()].filter((c) => c.feed).length;
  if (feeds >= MAX_FEEDS || typeof EventSource === "undefined") return poll(card);
  card.feed = new EventSource(`/api/v1/sales/${card.sale.id}/events`);
  card.feed.onmessage = (e) => {
    const counters = JSON.parse(e.data);
    Object.assign(card.sale, counters);
    paint(card);
  };
  card.feed.onerror = () => {
    // EventSource retries by itself; CLOSED means it gave up (the answer was not a stream): re-read instead.
    if (card.feed.readyState === EventSource.CLOSED) {
      card.feed = null;
      poll(card);
    }
  };
}

function poll(card) {
  if (card.poll) return;
  card.poll = setInterval(async () => {
    const answer = await getSale(card.sale.id);
    if (answer.ok) {
      card.sale = answer.data;
      paint(card);
    }
  }, POLL_MS);
}

function add(list, template, sale) {
  const node = template.content.firstElementChild.cloneNode(true);
  node.dataset.saleId = String(sale.id);
  node.querySelector(".name").textContent = sale.product_name;
  node.querySelector(".price").textContent = sale.price;
  node.querySelector(".total").textContent = String(sale.total_stock);
  const card = { el: node, sale, feed: null, poll: null, busy: false };
  const buy = node.querySelector('[data-test="buy"]');
  buy.setAttribute("aria-label", `Buy ${sale.product_name}`);
  buy.addEventListener("click", () => onBuy(card));
  list.append(node);
  cards.set(sale.id, card);
  paint(card);
  follow(card);
}

/** The sales a link names (`/?sale=42&sale=43`, a shop's product page), read one by one, as a list answer. */
async function named(ids) {
  const answers = await Promise.all(ids.map(getSale));
  const failed = answers.find((a) => !a.ok);
  return failed ?? { ok: true, data: { sales: answers.map((a) => a.data) } };
}

/** Reads the list (first page), or the sales the address names, and adds those not shown yet. Answers the
 *  API's answer. */
export async function load() {
  const ids = new URLSearchParams(location.search).getAll("sale").filter((id) => /^[1-9][0-9]*$/.test(id));
  const answer = ids.length > 0 ? await named(ids) : await listSales();
  if (!answer.ok) return answer;
  const list = document.getElementById("sales");
  const template = document.getElementById("sale-template");
  for (const sale of answer.data.sales) {
    const known = cards.get(sale.id);
    if (known) {
      if (!known.feed) known.sale = sale;
    } else {
      add(list, template, sale);
    }
  }
  document.getElementById("sales-empty").hidden = cards.size > 0;
  return answer;
}

/** `handler(card)` runs on a Buy press; it sets `card.busy` while the reservation is on its way. */
export function start(handler) {
  onBuy = handler;
  setInterval(() => cards.forEach(paint), 250);
}

export function setSignedIn(yes) {
  signedIn = yes;
  cards.forEach(paint);
}

/** The gateway answered SALE_ENDED: the sale is over even if this tab's clock or feed has not said so. */
export function ended(card) {
  card.sale.status = "ended";
  paint(card);
}

export function repaint(card) {
  paint(card);
}
