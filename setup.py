"""The optional compiled encoder; everything else is in pyproject.toml.

``optional=True``: where no C compiler is found the build goes on without it and the
pure-Python encoder (same output) is used.  Free-threaded interpreters (``Py_GIL_DISABLED``)
get the pure-Python encoder too: the compiled one relies on the GIL (see ``PyInit__speedups``).
"""

import sysconfig

from setuptools import Extension, setup

free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

setup(
    ext_modules=[]
    if free_threaded
    else [
        Extension(
            "otel_sched.otlp._speedups",
            ["src/otel_sched/otlp/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
