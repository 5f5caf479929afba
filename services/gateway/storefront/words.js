// What the buyer reads: every refusal in words (docs/frontend.md lists what a page does with each code),
// durations and money. No HTML is built from strings anywhere: text goes in with textContent.

const REFUSALS = {
  SOLD_OUT: "Sold out: every unit is taken. Units come back if a buyer does not pay in time.",
  LIMIT_EXCEEDED: "You already hold an order in this sale: pay for it, or wait until it expires.",
  SALE_NOT_STARTED: "This sale has not started yet.",
  SALE_ENDED: "This sale is over.",
  RATE_LIMITED: "Too many tries at once.",
  UNAVAILABLE: "The shop is busy or briefly unavailable.",
  UNAUTHORIZED: "Please sign in first; your sign-in may have expired.",
  SALE_NOT_FOUND: "This sale no longer exists.",
  ORDER_NOT_FOUND: "This order was not found.",
  ORDER_NOT_PAYABLE: "This order can no longer be paid: it is paid already or its time ran out.",
  INVALID_REQUEST: "The shop could not understand the request.",
  PAYLOAD_TOO_LARGE: "The request was too large.",
  NETWORK: "The shop cannot be reached. Check your connection.",
};

/** The sentence for a refusal; `seconds` is the Retry-After still to wait, if any. */
export function refusal(code, seconds) {
  const base = REFUSALS[code] ?? "Something went wrong.";
  if (seconds > 0) return `${base} Try again in ${seconds} s.`;
  if (code === "RATE_LIMITED" || code === "UNAVAILABLE" || code === "NETWORK") return `${base} Try again.`;
  return base;
}

const STATUS = {
  pending_payment: "Reserved: waiting for your payment",
  paid: "Paid",
  expired: "Expired: the time to pay ran out",
  refund_required: "Paid too late: a refund is on its way",
  rejected: "Not accepted: nothing was taken",
};

export function orderStatus(status) {
  return STATUS[status] ?? status;
}

const SALE = {
  upcoming: "Coming soon",
  active: "On sale now",
  sold_out: "Sold out",
  ended: "Sale ended",
};

export function saleStatus(status) {
  return SALE[status] ?? status;
}

/** `ms` as "2 d 3 h", "1 h 05 min", "4:07" or "0:09". */
export function duration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  return `${m}:${String(s).padStart(2, "0")}`;
}
