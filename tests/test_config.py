"""The kernel side's defaults are traitlets on CBridgeMagics: set in ipython_config.py or with
%config, overridden by a magic's own arguments. In a real kernel, against the real driver."""

from __future__ import annotations

from cbridge_magics.testing import ROOT, Kernel

HEADER = ROOT / "c_driver" / "include" / "demo_messages.h"
MAGICS = "get_ipython().find_magic('cbridge').__self__"


def test_config_file_then_config_magic_then_arguments(driver, tmp_path, monkeypatch,
                                                      cstruct_cache):
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(
        "c.CBridgeMagics.history = 321\nc.CBridgeMagics.plot_fps = 4.0\n"
        "c.CBridgeMagics.relay_queue_bytes = 65536\n")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # the kernel inherits it
    k = Kernel()
    try:
        k.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
        listed = k.run("%config CBridgeMagics")["stdout"]
        for trait in ("history", "plot_fps", "plot_window", "relay_host", "relay_port",
                      "relay_queue_bytes", "relay_max_message", "switch_interval", "backoff_cap"):
            assert f"CBridgeMagics.{trait}=" in listed
        assert "Current: 321" in listed

        k.run(f"%cbridge connect {driver.url}")  # from ipython_config.py
        assert k.value("bridge.history_of('Telemetry').capacity") == 321
        k.run("%config CBridgeMagics.history = 555")  # %config, later
        k.run(f"%cbridge connect {driver.url}")
        assert k.value("bridge.history_of('Telemetry').capacity") == 555
        k.run(f"%cbridge connect {driver.url} --history 77")  # the argument wins
        assert k.value("bridge.history_of('Telemetry').capacity") == 77

        k.run("%cbridge plot Telemetry.samples --window 64")
        assert k.value(f"[(p.fps, p.window) for p in {MAGICS}.plots.values()]") == [(4.0, 64)]
        k.run("%cbridge serve")
        assert k.value("bridge.relays[0].queue_bytes") == 65536
        k.run("%config CBridgeMagics.switch_interval = None")
        assert k.value("__import__('cbridge_magics.switch_interval').switch_interval"
                       ".SWITCH_INTERVAL") is None
        k.run("%unload_ext cbridge_magics")
        assert "CBridgeMagics" not in k.run("%config")["stdout"]
    finally:
        k.shutdown()
