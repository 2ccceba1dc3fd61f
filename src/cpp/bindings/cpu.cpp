// fastlrp._cpu: which x86-64 ISA levels this CPU and its operating system run, for
// fastlrp/_core.py to pick a kernel module before loading any. Compiled for the baseline
// x86-64 (no -march), with the Python C API only, so that it loads on every x86-64 machine.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject* levels(PyObject*, PyObject*) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();  // the checks include the OS saving the vector registers (XGETBV)
  const bool v2 = __builtin_cpu_supports("x86-64-v2");
  const bool v3 = __builtin_cpu_supports("x86-64-v3");
  const bool v4 = __builtin_cpu_supports("x86-64-v4");
#else
  const bool v2 = false, v3 = false, v4 = false;
#endif
  return Py_BuildValue("(OOO)", v2 ? Py_True : Py_False, v3 ? Py_True : Py_False, v4 ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"levels", levels, METH_NOARGS, "(v2, v3, v4): whether this CPU runs each x86-64 level."},
    {nullptr, nullptr, 0, nullptr},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu", "CPU feature levels.", -1, methods,
                                    nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__cpu(void) { return PyModule_Create(&module); }
