"""The optional compiled encoder; everything else is in pyproject.toml.

``optional=True``: where no C compiler is found the build goes on without it and the
pure-Python encoder (same output) is used.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "otel_sched._speedups",
            ["src/otel_sched/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
