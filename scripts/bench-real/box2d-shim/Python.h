/* bench-real: the box2d-py sdist's b2Settings.h includes <Python.h> only for its b2Assert
 * (PyErr_SetString(PyExc_AssertionError, ...) then a C++ throw).  Without Python, an
 * assertion failure prints the message and throws the same exception. */
#ifndef BENCH_REAL_PYTHON_SHIM_H
#define BENCH_REAL_PYTHON_SHIM_H
#include <cstdio>
#define PyExc_AssertionError "AssertionError"
static inline void PyErr_SetString(const char *kind, const char *what) {
    std::fprintf(stderr, "Box2D: %s: %s\n", kind, what);
}
#endif
