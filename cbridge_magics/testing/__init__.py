"""Support for tests, benchmarks and demos: a real driver process, a real kernel, a real Jupyter
Server with the cbridge extension, and waiting.

One way to start a driver, used by the test suites (tests/conftest.py), the benchmarks (bench/)
and ``python -m cbridge_magics demo``; it is useful for testing your own driver too:

    with DriverProcess(demo_driver(), "/tmp/t/d.sock", "--out-buffer", "65536") as d:
        b = connect(d.url)
    k = Kernel(); k.run("%load_ext cbridge_magics"); k.shutdown()
    s = JupyterServerProcess(workdir, {"demo": d.url}); connect(f"{s.ws}cbridge/drivers/demo/ws",
                                                                 token=s.TOKEN); s.stop()

Rooms: ``processes`` (a driver, waiting), ``kernel`` (a kernel and what a frontend does to its
widgets), ``servers`` (Jupyter Server, JupyterLab, a second client of a notebook's kernel in it).
"""

from .kernel import Kernel, WidgetFrontend
from .processes import ROOT, DriverProcess, demo_driver, wait_for
from .servers import JupyterServerProcess, LabKernel, LabProcess, free_port

__all__ = ["ROOT", "DriverProcess", "JupyterServerProcess", "Kernel", "LabKernel", "LabProcess",
           "WidgetFrontend", "demo_driver", "free_port", "wait_for"]
