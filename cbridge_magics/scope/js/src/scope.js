// cbridge's scope: an anywidget module that draws streamed fields with uPlot.
//
// The comm path: the kernel sends frames as binary buffers (per series, float64 x and float32
// y, at most a min and a max per pixel column); this module draws the newest one due at an
// animation frame and acknowledges it, so the kernel keeps only a few frames in flight: a
// hidden tab draws nothing, acknowledges nothing, and the kernel stops sending.
// The fast path (direct.js): the page reads the driver through Jupyter Server's route itself,
// folds its own min/max per column, and the kernel sends nothing.
//
// Interaction: drag to zoom (the kernel sends the detail), wheel to pan, ctrl+wheel to zoom
// around the cursor, double-click to follow the stream again; pause, y auto/fixed, PNG.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./scope.css";
import { openDirect } from "./direct.js";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"];

function button(label, title, onclick) {
  const b = document.createElement("button");
  b.className = "cbridge-scope-button";
  b.textContent = label;
  b.title = title;
  b.addEventListener("click", onclick);
  return b;
}

// One series' frame as uPlot data: [x, y]; several series joined on the union of their x.
// Tick labels with as many decimals as the step between ticks needs: uPlot's default keeps a
// few, and a zoom into a few microseconds of a run read 0.08, 0.08, 0.08.
function tickText(u, splits, axis, space, step) {
  let digits = 0;
  while (digits < 15 && Math.abs(step * 10 ** digits - Math.round(step * 10 ** digits))
         > 1e-6 * step * 10 ** digits) digits++;
  return splits.map((v) => (v == null ? "" : v.toFixed(digits)));
}

// The cursor's readout: x to the precision of a pixel column, values to 6 significant digits.
function xReadout(u, v) {
  if (v == null) return "--";
  const column = (u.scales.x.max - u.scales.x.min) / Math.max(1, u.bbox.width);
  return v.toFixed(Math.max(0, Math.min(15, Math.ceil(-Math.log10(column)))));
}

function yReadout(u, v) {
  return v == null ? "--" : String(Number(v.toPrecision(6)));
}

function toData(series) {
  if (series.length === 1) return [series[0].x, series[0].y];
  return uPlot.join(series.map((s) => [s.x, s.y]));
}

function yExtent(data, lo, hi) {
  let min = Infinity, max = -Infinity;
  const x = data[0];
  for (let k = 1; k < data.length; k++) {
    const y = data[k];
    for (let i = 0; i < y.length; i++) {
      const v = y[i];
      if (v == null || Number.isNaN(v) || x[i] < lo || x[i] > hi) continue;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (!(min <= max)) return [-1, 1];
  if (min === max) return [min - 1, max + 1];
  const pad = (max - min) * 0.05;
  return [min - pad, max + pad];
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "cbridge-scope";
  const bar = document.createElement("div");
  bar.className = "cbridge-scope-bar";
  const title = document.createElement("span");
  title.className = "cbridge-scope-title";
  const status = document.createElement("span");
  status.className = "cbridge-scope-status";
  const plotEl = document.createElement("div");
  root.append(bar, plotEl);
  el.appendChild(root);

  // What the page knows, exposed for tests and for people debugging in the console.
  const state = {
    u: null, frame: -1, drawn: -1, shown: -1, drawnAt: 0, draws: 0, received: 0, stale: 0,
    queue: [], queueSeq: -1,  // frames received, waiting to fall due; the view they are for
    viewSeq: model.get("view_seq"), programmatic: false, lastData: null, range: null,
    arrivals: new Float64Array(256),  // when the last frames came (performance.now()), a ring
    transits: new Float64Array(256),  // their seconds from the kernel's send to here
    busyMs: 0,  // milliseconds spent decoding and drawing frames
    link: null,  // the fast path, when the page reads the driver itself
    latencies: new Float64Array(256),  // fast path: ms from a message's arrival to its draw
    drawnX: new Array(256),  // fast path: [the newest x drawn, Date.now() / 1000], a ring
    viewDirty: false,
  };
  el.cbridgeScope = state;

  const pause = button("pause", "stop the kernel sending; zoom still reads the detail", () => {
    model.set("paused", !model.get("paused"));
    model.save_changes();
  });
  const yMode = button("y: auto", "fix the y range where it is, or autoscale again", () => {
    if (model.get("yrange").length) {
      model.set("yrange", []);
    } else {
      const y = state.u.scales.y;
      model.set("yrange", [y.min, y.max]);
    }
    model.save_changes();
    redraw();
  });
  const followB = button("follow", "back to the newest data (or double-click the plot)", () => follow());
  const png = button("PNG", "save the current view as a PNG file", () => {
    const a = document.createElement("a");
    a.href = state.u.ctx.canvas.toDataURL("image/png");
    a.download = `${model.get("title") || "scope"}.png`.replace(/[^\w.\- ]+/g, "_");
    document.body.appendChild(a);
    a.click();
    a.remove();
  });
  const close = button("\u2715", "close the scope: its thread in the kernel stops", () => {
    model.send({ type: "close" });
  });
  bar.append(title, pause, yMode, followB, png, close, status);

  function showState() {
    title.textContent = model.get("title");
    pause.textContent = model.get("paused") ? "resume" : "pause";
    yMode.textContent = model.get("yrange").length ? "y: fixed" : "y: auto";
    const where = model.get("follow") ? "following" : "zoomed: double-click to follow";
    const paused = model.get("paused") ? "paused, " : "";
    const note = model.get("status");
    status.textContent = `${paused}${where} (${model.get("path")})${note ? ": " + note : ""}`;
  }

  function setView(lo, hi) {
    state.viewDirty = true;
    if (state.link) redraw();
    model.set("follow", false);
    model.set("view", [lo, hi]);
    model.set("view_seq", ++state.viewSeq);
    model.save_changes();
    showState();
  }

  function follow() {
    state.viewDirty = true;
    if (state.link) redraw();
    model.set("follow", true);
    model.set("view", []);
    model.set("view_seq", ++state.viewSeq);
    model.save_changes();
    showState();
  }

  const labels = model.get("labels");
  const opts = {
    width: Math.max(200, el.clientWidth || 800),
    height: model.get("height"),
    legend: { live: true },
    cursor: {
      drag: { x: true, y: false, setScale: true },
      bind: { dblclick: () => null },  // ours below: follow the stream, not uPlot's reset
    },
    scales: { x: { time: false, auto: false }, y: { auto: false } },
    axes: [{ label: model.get("xlabel"), size: 40, values: tickText },
      { size: (u, values) => Math.max(50, 14 + 7 * Math.max(0, ...(values || []).map(
        (v) => v.length))), values: tickText }],
    series: [
      { label: model.get("xlabel"), value: xReadout },
      ...labels.map((label, i) => ({
        label, stroke: COLORS[i % COLORS.length], width: 1, spanGaps: false, points: { show: false },
        value: yReadout,
      })),
    ],
    hooks: {
      setScale: [(u, key) => {
        if (key === "x" && !state.programmatic && u.scales.x.min < u.scales.x.max) {
          setView(u.scales.x.min, u.scales.x.max);  // a drag-zoom: ask for the detail
        }
      }],
      draw: [() => { state.draws++; }],
      setSize: [() => reportColumns()],
    },
  };
  const empty = [new Float64Array(0), ...labels.map(() => new Float32Array(0))];
  state.u = new uPlot(opts, empty, plotEl);
  const u = state.u;

  u.over.addEventListener("dblclick", () => follow());
  u.over.addEventListener("wheel", (e) => {
    const x = u.scales.x;
    if (!(x.min < x.max)) return;
    e.preventDefault();
    const span = x.max - x.min;
    if (e.ctrlKey) {  // zoom around the cursor
      const at = u.posToVal(e.offsetX, "x");
      const f = e.deltaY > 0 ? 1.25 : 0.8;
      setView(at - (at - x.min) * f, at + (x.max - at) * f);
    } else {  // pan
      const d = (e.deltaY || e.deltaX) > 0 ? span * 0.1 : -span * 0.1;
      setView(x.min + d, x.max + d);
    }
    redraw();
  }, { passive: false });

  function columns() {
    return Math.max(16, Math.round(state.u.bbox.width / (window.devicePixelRatio || 1)));
  }

  // The kernel folds each pixel column's points into a min and a max: it needs the width.
  function reportColumns() {
    if (!state.u || columns() === model.get("columns")) return;
    model.set("columns", columns());
    model.save_changes();
  }

  const resize = new ResizeObserver(() => {
    const w = Math.max(200, el.clientWidth);
    if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height: model.get("height") });
  });
  resize.observe(el);

  // Frames come through Jupyter Server in bursts (sent every 17 ms, they arrive two or three
  // at once, then nothing for 40 ms): drawn as they come, most would be passed over. So each
  // frame is due a steady delay after the kernel sent it (both clocks are this machine's): the
  // SMOOTH quantile of recent transit times, at most MAX_DELAY. Each animation frame draws the
  // newest frame due; replies to zoom and pan are drawn at once.
  const SMOOTH = 0.8, MAX_DELAY = 0.06;
  let scheduled = false;
  function delay() {
    const t = [...state.transits].filter((x) => x > 0).sort((p, q) => p - q);
    return t.length < 8 ? 0 : Math.min(MAX_DELAY, t[Math.floor(SMOOTH * (t.length - 1))]);
  }

  function redraw() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      const began = performance.now();
      scheduled = false;
      if (state.link) {  // the fast path: the page's own data
        paintDirect(began);
        return;
      }
      const now = Date.now() / 1000, wait = delay();
      let p = null;
      while (state.queue.length && (state.queue[0].now || state.queue[0].sent + wait <= now)) {
        p = state.queue.shift();  // the older ones are passed over: settled with this one
      }
      if (state.queue.length) redraw();  // the rest fall due later
      if (p) {
        state.lastData = toData(p.series);
        state.range = p.range;
      } else if (state.queue.length) {
        return;
      }
      if (!state.lastData) return;
      paint();
      state.busyMs += performance.now() - began;
      if (p) {
        state.drawn = state.shown = p.frame;
        state.drawnAt = Date.now() / 1000;
        acknowledge(false);
      }
    });
  }

  // The fast path's draw: each series' points for the view, from the rings the page fills.
  function paintDirect(began) {
    const link = state.link;
    if (model.get("paused") && state.lastData && !state.viewDirty) return;
    state.viewDirty = false;
    const following = model.get("follow") || model.get("view").length !== 2;
    let range = following ? null : model.get("view");
    if (following) {
      for (const s of link.series) {
        const r = s.windowRange();
        if (r) range = range ? [Math.min(range[0], r[0]), Math.max(range[1], r[1])] : r;
      }
    }
    if (!range || !(range[0] < range[1])) return;
    const cols = columns();
    state.lastData = toData(link.series.map((s) => s.points(range[0], range[1], cols, following)));
    state.range = range;
    paint();
    state.drawn++;
    state.drawnAt = Date.now() / 1000;
    const arrival = link.stats.lastArrival;
    if (arrival) state.latencies[state.drawn % state.latencies.length] = performance.now() - arrival;
    // (the newest x drawn, when): a peer client of the driver can tell when that record came
    state.drawnX[state.drawn % state.drawnX.length] = [range[1], Date.now() / 1000];
    state.busyMs += performance.now() - began;
  }

  function paint() {
    const [lo, hi] = model.get("follow") || !state.range ? (state.range || [0, 1])
      : model.get("view");
    const fixed = model.get("yrange");
    const [ylo, yhi] = fixed.length ? fixed : yExtent(state.lastData, lo, hi);
    state.programmatic = true;
    try {
      u.batch(() => {
        u.setData(state.lastData, false);
        if (lo < hi) u.setScale("x", { min: lo, max: hi });
        u.setScale("y", { min: ylo, max: yhi });
      });
    } finally {
      state.programmatic = false;
      }
  }

  // Frames drawn are acknowledged (the kernel's credit for the next ones), at most every
  // ACK_MS: each message to the kernel costs it a busy and an idle status on IOPub, which every
  // page of the notebook handles. The kernel allows for that in its in-flight bound.
  const ACK_MS = 40;
  let acked = -1, lastAck = 0, ackTimer = null;
  function acknowledge(late) {
    if (state.drawn <= acked) return;
    const now = performance.now();
    if (!late && now - lastAck < ACK_MS) {
      if (ackTimer === null) ackTimer = setTimeout(() => { ackTimer = null; acknowledge(true); }, ACK_MS);
      return;
    }
    acked = state.drawn;
    lastAck = now;
    model.send({ type: "ack", frame: acked, drawn: state.shown, drawn_at: state.drawnAt,
                 draws: state.draws });
  }

  function onMessage(msg, buffers) {
    if (msg.type !== "data") return;
    state.received++;
    state.arrivals[state.received % state.arrivals.length] = performance.now();
    state.transits[state.received % state.transits.length] = Date.now() / 1000 - msg.sent;
    const began = performance.now();
    state.frame = msg.frame;
    if (msg.view_seq !== state.viewSeq && !msg.reply) {
      state.stale++;  // made for a view the user has left: settled, not drawn
      if (msg.frame > state.drawn) state.drawn = msg.frame;
      acknowledge(false);
      return;
    }
    const series = msg.series.map((s) => ({
      x: new Float64Array(buffers[s.x].buffer, buffers[s.x].byteOffset, s.n),
      y: Array.from(new Float32Array(buffers[s.y].buffer, buffers[s.y].byteOffset, s.n),
        (v) => (Number.isNaN(v) ? null : v)),
    }));
    const now = !!msg.reply || msg.view_seq !== state.queueSeq;  // a view's first frame
    state.queueSeq = msg.view_seq;
    state.queue.push({ frame: msg.frame, series, range: msg.range, sent: msg.sent, now });
    redraw();
    state.busyMs += performance.now() - began;
  }

  model.on("msg:custom", onMessage);
  const onChange = () => showState();
  const onYRange = () => { showState(); state.viewDirty = true; redraw(); };
  const watched = ["paused", "follow", "status", "path", "title"];
  for (const name of watched) model.on(`change:${name}`, onChange);
  model.on("change:yrange", onYRange);
  showState();
  reportColumns();
  model.send({ type: "ready", columns: columns() });  // a new view: the kernel sends its last frame

  // The fast path, when the kernel's Bridge reaches its driver through a route of the server
  // that may be this page's: tried once; the kernel sends frames until it works, and again if not.
  const plan = model.get("direct");
  if (plan && plan.route) {
    const link = openDirect(plan, {
      onData: () => redraw(),
      paused: () => model.get("paused"),
      onState: (ok, why) => {
        state.link = ok ? link : null;
        state.directWhy = why;
        model.set("path", ok ? "direct" : "comm");
        model.set("status", ok ? "" : `fast path unavailable: ${why}`);
        model.save_changes();
        if (!ok) link.close();
      },
    });
    state.directLink = link;
  }

  return () => {
    if (state.directLink) state.directLink.close();
    if (ackTimer !== null) clearTimeout(ackTimer);
    resize.disconnect();
    model.off("msg:custom", onMessage);
    for (const name of watched) model.off(`change:${name}`, onChange);
    model.off("change:yrange", onYRange);
    u.destroy();
  };
}

export default { render };
