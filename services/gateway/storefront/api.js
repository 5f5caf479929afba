// The HTTP calls of the page. Every answer becomes {ok, status, data} or {ok: false, status, code, message,
// retryAfter}: the API's error body is {"error": {"code", "message"}}; a network failure is code NETWORK.

const paymentUrl = document.querySelector('meta[name="flashsale-payment-url"]')?.content ?? "";

async function call(url, { method = "GET", token, body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    return { ok: false, status: 0, code: "NETWORK", message: String(e), retryAfter: 0 };
  }
  const data = await res.json().catch(() => null);
  if (res.ok) return { ok: true, status: res.status, data };
  const retry = Number.parseInt(res.headers.get("Retry-After") ?? "", 10);
  return {
    ok: false,
    status: res.status,
    code: data?.error?.code ?? "UNAVAILABLE",
    message: data?.error?.message ?? res.statusText,
    orderId: data?.error?.order_id,
    retryAfter: Number.isFinite(retry) ? retry : 0,
  };
}

/** A fresh Idempotency-Key: one per press of Buy, reused only to retry that same press. */
export function pressKey() {
  return crypto.randomUUID();
}

export const listSales = (cursor) =>
  call(`/api/v1/sales?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);

export const getSale = (id) => call(`/api/v1/sales/${id}`);

export const reserve = (saleId, token, key) =>
  call(`/api/v1/sales/${saleId}/reservations`, {
    method: "POST",
    token,
    body: { quantity: 1 },
    headers: { "Idempotency-Key": key },
  });

export const getOrder = (id, token) => call(`/api/v1/orders/${id}`, { token });

export const checkout = (orderId, token) =>
  call(`${paymentUrl}/api/v1/orders/${orderId}/checkout`, { method: "POST", token });

export const devToken = (name) =>
  call("/api/v1/dev/token", { method: "POST", body: { user_id: name } });
