"""Widgets in a real kernel (jupyter_client) on the demo driver streaming 10,000 records/s, with a
panel, a console and a live plot at 10 fps open:

- IOPub messages a second with no cell running; target <= 15.
- a `1+1` cell's round trip, against the same kernel with nothing open; target p99 <= 50 ms.
- a click on the panel's Request button (a comm message, as JupyterLab sends it) to the reply
  table's update on IOPub, on the main shell and on a subshell, with Bridge.request's own round
  trip in the kernel beside it. (From a click in a real browser to the reply in the page: the
  browser suite writes out/panel-latency.json.)
"""

from __future__ import annotations

import time

from common import ROOT, cell_round_trips, pct, running_driver, table

from cbridge_magics.testing import Kernel, WidgetFrontend

HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"
CELLS, CLICKS = 200, 50
WIDGETS = ("%cbridge panel Command --choices op=DEMO_OP_ waveform=DEMO_WAVE_\n"
           "%cbridge console\n"
           "%cbridge plot Telemetry.samples --time t0:dt --fps 10 --window 12800")


def clicks(k: Kernel, fe: WidgetFrontend, ids: dict[str, str], subshell: str | None) -> list[float]:
    out = []
    for i in range(CLICKS):
        value = 10.0 + i
        fe.type(ids["freq"], value, subshell)
        fe.pump(0.02)
        t0 = time.perf_counter()
        fe.click(ids["request"], subshell)
        fe.wait_for(ids["reply"], lambda s, v=value: f"<td>{v:g}</td>" in s.get("value", ""))
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    with running_driver() as sock:
        k = Kernel()
        try:
            k.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
            k.run(f"%cbridge connect unix://{sock}")
            idle = cell_round_trips(k, CELLS)
            k.run("%cbridge send Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, "
                  "frequency_hz=50.0, amplitude=1.0, rate_hz=10000, batch=10)")
            k.run(WIDGETS)
            k.run("panel.value = Command(op=DEMO_OP_START, waveform=DEMO_WAVE_SINE, "
                  "frequency_hz=50.0, amplitude=1.0, rate_hz=10000, batch=10)")
            quiet = k.collect(10.0)
            loaded = cell_round_trips(k, CELLS)
            kinds: dict[str, int] = {}
            for m in quiet:
                kinds[m["msg_type"]] = kinds.get(m["msg_type"], 0) + 1
            print(table("IOPub over 10 s, no cell running (panel, console, plot at 10 fps, "
                        "10,000 records/s)", ["messages/s", "by type", "target"],
                        [[f"{len(quiet) / 10:.1f}",
                          ", ".join(f"{t} {n / 10:.1f}" for t, n in sorted(kinds.items())),
                          "<= 15/s"]]))
            print(table(f"`1+1` cell round trip ({CELLS} cells)", ["kernel", "p50 ms", "p99 ms",
                                                                   "target"],
                        [["nothing open, idle", f"{pct(idle, .5):.1f}", f"{pct(idle, .99):.1f}", ""],
                         ["widgets open, streaming", f"{pct(loaded, .5):.1f}",
                          f"{pct(loaded, .99):.1f}", "p99 <= 50 ms"]]))
            ids = k.value("{k: v.model_id for k, v in {'freq': panel.form.fields[2][0].widget, "
                          "'request': panel.request_button, 'reply': panel.reply}.items()}")
            fe = WidgetFrontend(k)
            main_shell = clicks(k, fe, ids, None)
            sub = clicks(k, fe, ids, fe.subshell())
            k.run("import time\n_rtt = []\nfor _ in range(200):\n    _t = time.perf_counter()\n"
                  "    bridge.request(Command(op=DEMO_OP_GET_STATUS), timeout=2)\n"
                  "    _rtt.append(time.perf_counter() - _t)")
            rtt = k.value("_rtt")
            print(table(f"Request click (comm message) to the reply's widget update ({CLICKS} clicks)",
                        ["path", "p50 ms", "p99 ms"],
                        [["click on the main shell", f"{pct(main_shell, .5):.1f}",
                          f"{pct(main_shell, .99):.1f}"],
                         ["click on a subshell", f"{pct(sub, .5):.1f}", f"{pct(sub, .99):.1f}"],
                         ["Bridge.request in the kernel", f"{pct(rtt, .5):.2f}",
                          f"{pct(rtt, .99):.2f}"]]))
            k.run("%cbridge send Command(op=DEMO_OP_STOP)\n%cbridge disconnect")
        finally:
            k.shutdown()


if __name__ == "__main__":
    main()
