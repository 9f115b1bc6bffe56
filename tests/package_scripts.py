"""What tests/test_package.py runs inside the venv that has the wheel: Python scripts (each run by
that venv's Python, from a folder outside the checkout) and a user's CMake project."""

KERNEL_SESSION = """
    import sys, tempfile
    from pathlib import Path
    from cbridge_magics.testing import DriverProcess, Kernel, demo_driver

    sock = Path(tempfile.mkdtemp()) / "d.sock"
    with DriverProcess(demo_driver(), sock) as d:
        k = Kernel(cwd=sys.argv[1])
        try:
            out = k.run("%load_ext cbridge_magics\\n%cstruct --header demo_messages.h",
                        timeout=180)["stdout"]
            print("CSTRUCT", out.strip())
            out = k.run(f"%cbridge connect {d.url}")["stdout"]
            print("CONNECT", out.strip().splitlines()[0])
            res = k.run("%cbridge send Command(op=DEMO_OP_START, frequency_hz=5.0, amplitude=1.0,"
                        " rate_hz=200, batch=10)")
            shown = [m["content"]["data"].get("text/plain", "") for m in res["outputs"]
                     if m["msg_type"] in ("display_data", "execute_result")]
            print("SEND", " ".join(shown + [res["stdout"]]).replace("\\n", " "))
            k.run("%cbridge plot Telemetry.samples --fps 5\\n%cbridge wait 1.5")
            pngs = [m for m in k.messages if m["msg_type"] in ("display_data",
                    "update_display_data") and "image/png" in m["content"]["data"]]
            print("PLOT", len(pngs))
            print("RECORDS", k.value("bridge.stats().types['Telemetry'].records"))
            k.run("%cbridge panel Command --choices op=DEMO_OP_\\n%cbridge console")
            print("WIDGETS", k.value("type(panel).__name__ + ' ' + type(console).__name__"))
            k.run("%cbridge record run.cbrec --types Telemetry\\n%cbridge wait 0.5\\n"
                  "%cbridge record --stop")
            print("RECORDED", k.value("len(__import__('cbridge_magics.recording', fromlist=['x'])"
                                      ".open('run.cbrec').records('Telemetry'))"))
            k.run("from cbridge_magics import recording\\n"
                  "try:\\n    recording.open('run.cbrec').to_xarray('Telemetry')\\n"
                  "    noextra = 'it worked without the data extra'\\n"
                  "except ModuleNotFoundError as e:\\n    noextra = str(e)")
            print("NOEXTRA", k.value("noextra"))
            print("MODULE", k.value("__import__('cbridge_magics').__file__"))
            k.run("%cbridge scope Telemetry.samples --time t0:dt --name s")
            print("SCOPE", k.value("len(s._esm) > 10000 and 'cbridge-scope' in s._esm and s.path"),
                  k.value("__import__('cbridge_magics.scope._decimate', fromlist=['x']).__file__"))
        finally:
            k.shutdown()
"""

SERVER_SESSION = """
    import sys, tempfile
    from pathlib import Path
    from cbridge_magics import connect
    from cbridge_magics.testing import DriverProcess, JupyterServerProcess, demo_driver

    work = Path(tempfile.mkdtemp())
    # configured with nothing: the extension is on, and serves an empty driver list
    s = JupyterServerProcess(work / "bare", {}, enable=False)
    try:
        print("BARE", s.get_json("cbridge/api/drivers"))
    finally:
        s.stop()
    with DriverProcess(demo_driver(), work / "d.sock") as d:
        # enable=False: the server config names only the drivers; the install enabled it
        s = JupyterServerProcess(work / "server", {"demo": d.url}, enable=False)
        try:
            print("DRIVERS", s.get_json("cbridge/api/drivers"))
            b = connect(f"{s.ws}cbridge/drivers/demo/ws", token=s.TOKEN)
            status = b.request(b.types["Command"](op=0))
            print("STATUS", type(status).__name__, status.code)
            b.close()
        finally:
            s.stop()
"""

CMAKE_PROJECT = """
cmake_minimum_required(VERSION 3.21)
project(minimal_user C)
find_package(cbridge CONFIG REQUIRED)
add_executable(minimal-cmake minimal.c minimal_schema.c)
target_include_directories(minimal-cmake PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(minimal-cmake PRIVATE cbridge::cbridge)
add_executable(minimal-cmake-static minimal.c minimal_schema.c)
target_include_directories(minimal-cmake-static PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(minimal-cmake-static PRIVATE cbridge::cbridge_static)
"""

DRIVE_MINIMAL = """
    import sys
    from cbridge_magics import connect, cstruct
    from cbridge_magics.testing import DriverProcess

    ns = cstruct.compile_header(sys.argv[1])
    for binary in sys.argv[2:]:
        with DriverProcess(binary, binary + ".sock") as d:
            b = connect(d.url, reconnect=False)
            b.register(*b.match(ns.classes.values()).matching)
            ack = b.request(ns.Setpoint(celsius=30.0, rate_hz=100))
            print(binary.rsplit("/", 1)[-1], b.schema.driver, type(ack).__name__, ack.celsius)
            b.close()
"""
