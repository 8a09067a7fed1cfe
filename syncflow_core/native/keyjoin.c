/*
 * syncflow_core._keyjoin: join incoming and stored rows on their 32-char key hashes and
 * compare their 32-char data hashes, in one pass per side.
 *
 * The numpy join in syncflow_core.delta (argsort + searchsorted on a 64-bit prefix, then a
 * verification of every match on all 32 bytes) costs ~0.3 s per 1M x 1M on the 2-core box and
 * sits between reading the stored identities and writing; this open-addressing hash join
 * compares the full 32 bytes as it goes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define HASH_BYTES 32
#define AHEAD 16

static uint64_t slot_of(const unsigned char *key) {
    /* All 32 bytes mixed: real keys are uniform hashes, but a table may hold anything (keys
     * sharing a long prefix must not pile up in one run of slots). */
    uint64_t w[4];
    memcpy(w, key, 32);
    uint64_t h = w[0];
    for (int i = 1; i < 4; i++) {
        h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ULL + w[i];
    }
    h = (h ^ (h >> 32)) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

PyDoc_STRVAR(join_doc,
"join(inc_keys, inc_data, stored_keys, stored_data) -> (mi, ms, only_stored, changed) | None\n\n"
"inc_keys/inc_data hold n rows of 32 bytes; stored_keys/stored_data are lists of chunks of\n"
"32-byte rows (chunk i of both with the same row count; m rows in all, numbered across the\n"
"chunks). Returns int64 arrays as bytes: matched incoming and stored row numbers (pairs, in\n"
"stored order), stored rows without a match (ascending), and per pair one byte: 1 when the\n"
"data hashes differ. None when a key occurs twice on either side (the caller's exact path\n"
"reports it).");

typedef struct {
    Py_buffer keys, data;
} chunk_t;

static PyObject *join(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer ik, id;
    PyObject *key_list, *data_list;
    if (!PyArg_ParseTuple(args, "y*y*O!O!", &ik, &id, &PyList_Type, &key_list, &PyList_Type,
                          &data_list)) {
        return NULL;
    }
    PyObject *result = NULL;
    int64_t *table = NULL, *mi = NULL, *ms = NULL, *only = NULL;
    unsigned char *changed = NULL, *used = NULL;
    Py_ssize_t k = PyList_GET_SIZE(key_list), ready = 0;
    chunk_t *chunks = PyMem_Calloc(k ? (size_t)k : 1, sizeof(chunk_t));
    Py_ssize_t n = ik.len / HASH_BYTES, m = 0;
    if (chunks == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (ik.len % HASH_BYTES || id.len != ik.len || PyList_GET_SIZE(data_list) != k) {
        PyErr_SetString(PyExc_ValueError, "hash buffers must hold whole 32-byte rows, "
                                          "keys and data alike");
        goto done;
    }
    for (; ready < k; ready++) {
        chunk_t *c = &chunks[ready];
        if (PyObject_GetBuffer(PyList_GET_ITEM(key_list, ready), &c->keys, PyBUF_SIMPLE) < 0) {
            goto done;
        }
        if (PyObject_GetBuffer(PyList_GET_ITEM(data_list, ready), &c->data, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&c->keys);
            goto done;
        }
        if (c->keys.len % HASH_BYTES || c->data.len != c->keys.len) {
            ready++;
            PyErr_SetString(PyExc_ValueError, "hash buffers must hold whole 32-byte rows, "
                                              "keys and data alike");
            goto done;
        }
        m += c->keys.len / HASH_BYTES;
    }
    size_t cap = 16;
    while (cap < (size_t)n * 2) {
        cap <<= 1;
    }
    table = PyMem_Malloc(cap * sizeof(int64_t));
    used = PyMem_Calloc(n ? (size_t)n : 1, 1);
    size_t out_cap = (size_t)(m ? m : 1);
    mi = PyMem_Malloc(out_cap * sizeof(int64_t));
    ms = PyMem_Malloc(out_cap * sizeof(int64_t));
    only = PyMem_Malloc(out_cap * sizeof(int64_t));
    changed = PyMem_Malloc(out_cap);
    if (!table || !used || !mi || !ms || !only || !changed) {
        PyErr_NoMemory();
        goto done;
    }
    const unsigned char *ikeys = ik.buf, *idata = id.buf;
    int duplicate = 0;
    Py_ssize_t matched = 0, alone = 0;
    Py_BEGIN_ALLOW_THREADS
    memset(table, 0xff, cap * sizeof(int64_t)); /* -1: empty */
    size_t mask = cap - 1;
    /* Both loops are bound by cache misses on random slots and rows, not by arithmetic:
     * the slot of a row AHEAD rows later is prefetched now, and (probe) the incoming row a
     * slot points to is prefetched AHEAD/2 rows before it is compared. */
    for (Py_ssize_t i = 0; i < n && !duplicate; i++) {
        if (i + AHEAD < n) {
            __builtin_prefetch(&table[slot_of(ikeys + (size_t)(i + AHEAD) * HASH_BYTES) & mask],
                               1);
        }
        const unsigned char *key = ikeys + (size_t)i * HASH_BYTES;
        size_t s = slot_of(key) & mask;
        while (table[s] >= 0) {
            if (memcmp(ikeys + (size_t)table[s] * HASH_BYTES, key, HASH_BYTES) == 0) {
                duplicate = 1;
                break;
            }
            s = (s + 1) & mask;
        }
        table[s] = i;
    }
    Py_ssize_t base = 0; /* row number of the chunk's first row */
    for (Py_ssize_t c = 0; c < k && !duplicate; c++) {
        const unsigned char *skeys = chunks[c].keys.buf, *sdata = chunks[c].data.buf;
        Py_ssize_t rows = chunks[c].keys.len / HASH_BYTES;
        for (Py_ssize_t j = 0; j < rows; j++) {
            if (j + AHEAD < rows) {
                __builtin_prefetch(
                    &table[slot_of(skeys + (size_t)(j + AHEAD) * HASH_BYTES) & mask]);
            }
            if (j + AHEAD / 2 < rows) {
                int64_t next = table[slot_of(skeys + (size_t)(j + AHEAD / 2) * HASH_BYTES) & mask];
                if (next >= 0) {
                    __builtin_prefetch(ikeys + (size_t)next * HASH_BYTES);
                    __builtin_prefetch(idata + (size_t)next * HASH_BYTES);
                }
            }
            const unsigned char *key = skeys + (size_t)j * HASH_BYTES;
            size_t s = slot_of(key) & mask;
            int64_t hit = -1;
            while (table[s] >= 0) {
                if (memcmp(ikeys + (size_t)table[s] * HASH_BYTES, key, HASH_BYTES) == 0) {
                    hit = table[s];
                    break;
                }
                s = (s + 1) & mask;
            }
            if (hit < 0) {
                only[alone++] = base + j;
                continue;
            }
            if (used[hit]) {
                duplicate = 1; /* a stored key twice */
                break;
            }
            used[hit] = 1;
            mi[matched] = hit;
            ms[matched] = base + j;
            changed[matched] = memcmp(idata + (size_t)hit * HASH_BYTES,
                                      sdata + (size_t)j * HASH_BYTES, HASH_BYTES) != 0;
            matched++;
        }
        base += rows;
    }
    Py_END_ALLOW_THREADS
    if (duplicate) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = Py_BuildValue(
        "(y#y#y#y#)", (const char *)mi, (Py_ssize_t)(matched * sizeof(int64_t)),
        (const char *)ms, (Py_ssize_t)(matched * sizeof(int64_t)), (const char *)only,
        (Py_ssize_t)(alone * sizeof(int64_t)), (const char *)changed, matched);
done:
    for (Py_ssize_t c = 0; c < ready; c++) {
        PyBuffer_Release(&chunks[c].keys);
        PyBuffer_Release(&chunks[c].data);
    }
    PyMem_Free(chunks);
    PyMem_Free(table);
    PyMem_Free(used);
    PyMem_Free(mi);
    PyMem_Free(ms);
    PyMem_Free(only);
    PyMem_Free(changed);
    PyBuffer_Release(&ik);
    PyBuffer_Release(&id);
    return result;
}

static PyMethodDef methods[] = {
    {"join", join, METH_VARARGS, join_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_keyjoin",
    "Hash join of key hashes with a data-hash compare (see syncflow_core.delta).",
    -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__keyjoin(void) { return PyModule_Create(&module); }
