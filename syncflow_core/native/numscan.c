/*
 * syncflow_core._numscan: the common shape of a text number, read in one pass per row.
 *
 * The same rule as the numpy reference `syncflow_core.normalize.numbers._simple_values_numpy`
 * (which the tests check this against): a row is accepted when it is exactly
 * ^[+-]?(?:\d{1,3}(?:G\d{3})+|\d+)(?:D\d+)?$ with at most `scale` fractional digits, at most 18
 * digits in all at that scale and (precision >= 0) a value below 10**precision; its value is
 * the integer value * 10**scale. The numpy version needs ~15 passes over a (width, rows) block
 * (~0.38 s per 1M values); this reads each byte once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define MAX_DIGITS 18

static const int64_t POW10[MAX_DIGITS + 1] = {
    1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL, 100000000LL,
    1000000000LL, 10000000000LL, 100000000000LL, 1000000000000LL, 10000000000000LL,
    100000000000000LL, 1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
    1000000000000000000LL,
};

/* One row: 1 and *value when accepted, else 0. */
static int parse_row(const unsigned char *p, int64_t len, int dec, int grp, int scale,
                     int precision, int64_t *value) {
    int signed_ = p[0] == '+' || p[0] == '-';
    int64_t n_digit = 0, n_dec = 0, n_grp = 0, point = len;
    for (int64_t j = 0; j < len; j++) {
        unsigned char b = p[j];
        if (b >= '0' && b <= '9') {
            n_digit++;
        } else if (b == dec) {
            n_dec++;
            point = j;
        } else if (b == grp) {
            n_grp++;
        }
    }
    if (n_digit + n_dec + n_grp + signed_ != len || n_dec > 1) {
        return 0;
    }
    int64_t frac = n_dec ? len - point - 1 : 0;
    if (point - signed_ < 1 || (n_dec && frac < 1) || frac > scale) {
        return 0;
    }
    if (n_grp) {
        /* Separators exactly every fourth position left of the point, first group 1-3. */
        if (((point - signed_) & 3) == 0) {
            return 0;
        }
        for (int64_t j = 0; j < len; j++) {
            int64_t rel = point - j;
            unsigned char b = p[j];
            if (b == grp && (rel <= 0 || (rel & 3) != 0)) {
                return 0;
            }
            if (b >= '0' && b <= '9' && rel > 0 && (rel & 3) == 0) {
                return 0;
            }
        }
    }
    if (n_digit - frac + scale > MAX_DIGITS) {
        return 0;
    }
    int64_t v = 0;
    for (int64_t j = 0; j < len; j++) {
        unsigned char b = p[j];
        if (b >= '0' && b <= '9') {
            v = v * 10 + (b - '0');
        }
    }
    v *= POW10[scale - frac];
    if (precision >= 0 && precision < MAX_DIGITS && v >= POW10[precision]) {
        return 0;
    }
    *value = p[0] == '-' ? -v : v;
    return 1;
}

PyDoc_STRVAR(simple_decimals_doc,
"simple_decimals(data, offsets, candidate, dec, grp, scale, precision) -> (values, ok)\n\n"
"data: the rows' UTF-8 bytes; offsets: int64, n+1 entries into data; candidate: n bytes (0/1),\n"
"the rows to read; dec/grp: the decimal and grouping byte; precision -1 for none. Returns n\n"
"int64 values (value * 10**scale, 0 where not ok) and n bools, as bytes.\n"
"Raises ValueError on offsets that decrease or point outside data.");

static PyObject *simple_decimals(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, offsets, candidate;
    int dec, grp, scale, precision;
    if (!PyArg_ParseTuple(args, "y*y*y*iiii", &data, &offsets, &candidate, &dec, &grp, &scale,
                          &precision)) {
        return NULL;
    }
    PyObject *values = NULL, *ok = NULL, *result = NULL;
    Py_ssize_t n = candidate.len;
    if (offsets.len != (n + 1) * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "offsets must be n+1 int64 values");
        goto done;
    }
    if (scale < 0 || scale > MAX_DIGITS) {
        PyErr_SetString(PyExc_ValueError, "scale must be within 0..18");
        goto done;
    }
    const int64_t *off = (const int64_t *)offsets.buf;
    const unsigned char *cand = (const unsigned char *)candidate.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (cand[i] && (off[i] < 0 || off[i + 1] < off[i] || off[i + 1] > (int64_t)data.len)) {
            PyErr_SetString(PyExc_ValueError, "offsets point outside the data");
            goto done;
        }
    }
    values = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    ok = PyBytes_FromStringAndSize(NULL, n);
    if (values == NULL || ok == NULL) {
        goto done;
    }
    int64_t *v = (int64_t *)PyBytes_AS_STRING(values);
    unsigned char *k = (unsigned char *)PyBytes_AS_STRING(ok);
    const unsigned char *src = (const unsigned char *)data.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t len = off[i + 1] - off[i];
        v[i] = 0;
        k[i] = cand[i] && len > 0 &&
               parse_row(src + off[i], len, dec, grp, scale, precision, &v[i]);
    }
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(2, values, ok);
done:
    Py_XDECREF(values);
    Py_XDECREF(ok);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&candidate);
    return result;
}

static PyMethodDef methods[] = {
    {"simple_decimals", simple_decimals, METH_VARARGS, simple_decimals_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_numscan",
    "The common shape of text numbers, read in C (see syncflow_core.normalize.numbers).",
    -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__numscan(void) { return PyModule_Create(&module); }
