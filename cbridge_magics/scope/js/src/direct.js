// The scope's fast path: the page reads the driver through Jupyter Server's cbridge route itself
// (same origin: the login cookie, Jupyter's authorizer and Origin rules), so the kernel sends no
// data. The wire is docs/reference/protocol.md's: 16-byte little-endian frame headers, one or more whole
// frames per WebSocket message, the HELLO first; SUBSCRIBE asks for the scoped types only.
//
//   const link = openDirect(plan, { onData, onState, paused });   // plan: scope/direct.py's
//   link.series[i].points(lo, hi, columns)                 // {x, y, range} for a view
//   link.close();

const MAGIC = 0x4243, VERSION = 1, HEADER = 16;
const T_HELLO = 1, T_ERROR = 2, T_SUBSCRIBE = 4, FLAG_STREAM = 0x02;

function reader(view, f) {
  const le = true;
  const get = {
    float: { 4: (o) => view.getFloat32(o, le), 8: (o) => view.getFloat64(o, le) },
    int: { 1: (o) => view.getInt8(o), 2: (o) => view.getInt16(o, le), 4: (o) => view.getInt32(o, le),
      8: (o) => Number(view.getBigInt64(o, le)) },
    uint: { 1: (o) => view.getUint8(o), 2: (o) => view.getUint16(o, le),
      4: (o) => view.getUint32(o, le), 8: (o) => Number(view.getBigUint64(o, le)) },
  };
  return get[f.kind][f.size];
}

// The latest values of one TYPE.FIELD, in a ring of typed arrays: KEEP windows of them, so a
// zoom or a pan of the page's own view finds the detail without asking anyone.
const KEEP = 4;
class Series {
  constructor(spec) {
    this.spec = spec;
    this.cap = Math.max(2, spec.window * KEEP);
    this.x = new Float64Array(this.cap);
    this.y = new Float64Array(this.cap);
    this.next = 0;
    this.count = 0;
    this.total = 0;  // values ever received: the index x of the next one
  }

  push(view, offset, records) {
    const s = this.spec, n = s.y.count;
    const y = reader(view, s.y);
    const t0 = s.t0 && reader(view, s.t0), dt = s.dt && reader(view, s.dt);
    const fx = s.x && reader(view, s.x);
    for (let r = 0; r < records; r++) {
      const base = offset + r * s.size;
      const start = t0 ? t0(base + s.t0.offset) : 0, step = dt ? dt(base + s.dt.offset) : 0;
      const xv = fx ? fx(base + s.x.offset) : 0;
      for (let k = 0; k < n; k++) {
        const i = this.next;
        this.y[i] = y(base + s.y.offset + k * s.y.size);
        this.x[i] = t0 ? start + step * k : fx ? xv : this.total;
        this.total++;
        this.next = (i + 1) % this.cap;
        if (this.count < this.cap) this.count++;
      }
    }
  }

  // Index of the k-th value of the last n (0: the oldest of them).
  at(n, k) { return (this.next - n + k + this.cap) % this.cap; }

  // The follow view: the latest `window` values' x range.
  windowRange() {
    const n = Math.min(this.spec.window, this.count);
    if (n < 2) return null;
    let lo = Infinity, hi = -Infinity;
    for (const k of [0, n - 1]) {  // in time order: the ends (x of a field: scan them all)
      const v = this.x[this.at(n, k)];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (this.spec.x) {
      for (let k = 0; k < n; k++) {
        const v = this.x[this.at(n, k)];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    return [lo, hi];
  }

  // At most a min and a max per pixel column of [lo, hi], from every value kept (following:
  // the latest window only), in x order; the nearest value outside each edge too.
  points(lo, hi, columns, following) {
    const n = following ? Math.min(this.spec.window, this.count) : this.count;
    const mn = new Float64Array(columns).fill(Infinity), mx = new Float64Array(columns).fill(-Infinity);
    const imn = new Int32Array(columns).fill(-1), imx = new Int32Array(columns).fill(-1);
    let before = -1, after = -1;
    const scale = columns / (hi - lo);
    for (let k = 0; k < n; k++) {
      const i = this.at(n, k), xv = this.x[i], yv = this.y[i];
      if (Number.isNaN(yv)) continue;
      if (xv < lo) { if (before < 0 || xv >= this.x[before]) before = i; continue; }
      if (xv > hi) { if (after < 0 || xv < this.x[after]) after = i; continue; }
      const c = Math.min(columns - 1, Math.floor((xv - lo) * scale));
      if (yv < mn[c]) { mn[c] = yv; imn[c] = i; }
      if (yv > mx[c]) { mx[c] = yv; imx[c] = i; }
    }
    const picked = [];
    if (before >= 0) picked.push(before);
    for (let c = 0; c < columns; c++) {
      if (imn[c] < 0) continue;
      if (imn[c] === imx[c]) picked.push(imn[c]);
      else if (this.x[imn[c]] <= this.x[imx[c]]) picked.push(imn[c], imx[c]);
      else picked.push(imx[c], imn[c]);
    }
    if (after >= 0) picked.push(after);
    return { x: Float64Array.from(picked, (i) => this.x[i]), y: Array.from(picked, (i) => this.y[i]) };
  }
}

function wsBase() {
  let config = {};
  try {
    config = JSON.parse(document.getElementById("jupyter-config-data")?.textContent || "{}");
  } catch (e) { /* not a Jupyter page: the origin's root */ }
  const base = config.wsUrl || (location.origin.replace(/^http/, "ws") + (config.baseUrl || "/"));
  return base.endsWith("/") ? base : base + "/";
}

function subscribe(ids) {
  const buf = new ArrayBuffer(HEADER + 4 + 4 * ids.length), v = new DataView(buf);
  v.setUint16(0, MAGIC, true); v.setUint8(2, VERSION); v.setUint8(3, 0);
  v.setUint32(4, T_SUBSCRIBE, true); v.setUint32(8, 1, true); v.setUint32(12, 4 + 4 * ids.length, true);
  v.setUint32(16, ids.length, true);
  ids.forEach((id, i) => v.setUint32(20 + 4 * i, id, true));
  return buf;
}

export function openDirect(plan, { onData, onState, paused }) {
  const series = plan.series.map((spec) => new Series(spec));
  const byType = new Map();
  series.forEach((s) => {
    if (!byType.has(s.spec.type_id)) byType.set(s.spec.type_id, []);
    byType.get(s.spec.type_id).push(s);
  });
  const url = wsBase() + plan.route;
  let ws, live = false, closed = false;
  const stats = { messages: 0, frames: 0, records: 0, lastArrival: 0 };
  try {
    ws = new WebSocket(url);
  } catch (e) {
    onState(false, `the route ${url} cannot be opened: ${e}`);
    return { series, stats, close() {} };
  }
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => {
    if (!(ev.data instanceof ArrayBuffer)) return;
    stats.messages++;
    stats.lastArrival = performance.now();
    const view = new DataView(ev.data);
    let got = false;
    for (let at = 0; at + HEADER <= view.byteLength;) {
      const magic = view.getUint16(at, true), type = view.getUint32(at + 4, true);
      const flags = view.getUint8(at + 3), length = view.getUint32(at + 12, true);
      if (magic !== MAGIC || at + HEADER + length > view.byteLength) break;  // not ours: stop
      const body = at + HEADER;
      if (type === T_HELLO && !live) {
        const text = new TextDecoder().decode(new Uint8Array(ev.data, body, length));
        if (text !== plan.hello) {
          onState(false, "the page's server serves a different driver on this route");
          ws.close();
          return;
        }
        live = true;
        ws.send(subscribe([...byType.keys()]));
        onState(true, "");
      } else if (live && (flags & FLAG_STREAM) && byType.has(type) && !paused()) {
        // (paused: what the rings hold stays still, for zoom and pan to read)
        for (const s of byType.get(type)) {
          const records = Math.floor(length / s.spec.size);
          s.push(view, body, records);
          stats.records += records;
        }
        stats.frames++;
        got = true;
      } else if (type === T_ERROR) {
        stats.errors = (stats.errors || 0) + 1;  // OVERLOADED: frames the relay dropped for us
      }
      at = body + length;
    }
    if (got) onData();
  };
  ws.onerror = () => { if (!live && !closed) onState(false, `the route ${url} refused the page`); };
  ws.onclose = (ev) => {
    if (closed) return;
    onState(false, live ? `the route closed (${ev.code})` : `the route ${url} refused the page (${ev.code})`);
    live = false;
  };
  return {
    series, stats,
    close() { closed = true; try { ws.close(); } catch (e) { /* already closed */ } },
  };
}
