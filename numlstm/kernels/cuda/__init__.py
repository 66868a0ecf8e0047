"""``@cuda.jit`` twins of the CPU kernels (``numlstm.kernels.cpu``): same arguments, same results.

Importing this package imports ``numba.cuda``; the rest of numlstm reaches it
only through ``numlstm.backend.cuda_kernels()``, after checking that CUDA is
available. Submodules load on first attribute access
(``numlstm.kernels.cuda.lstm``), so a module that is not written yet costs
nothing until it is used.

Every module has the three layers of STYLE.md: the ``@cuda.jit`` kernels
(private, ``_name_kernel``), and host drivers that take device arrays,
allocate outputs where asked and launch with the launch configuration read
from ``numlstm.kernels.cuda.config`` at call time.
"""

import importlib


def __getattr__(name: str):
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise AttributeError(f"module {__name__!r} has no submodule {name!r}") from None
        raise
    globals()[name] = module
    return module
