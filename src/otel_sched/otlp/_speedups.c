/* Compiled OTLP encoder for SDK spans and log records: the hot path of otel_sched.otlp._encoding's
 * encode_span and encode_log.
 *
 * Scope: an ended or live span of a trusted class (ReadableSpan, or a class that
 * _encoding._trusted_span_type judged to read its data from ReadableSpan's private
 * fields) and a ReadableLogRecord over the API's LogRecord, whose parts have the SDK's
 * own exact types and whose values are None/bool/str/int/float/bytes, tuples/lists and
 * dicts with str keys (nested up to MAX_DEPTH).  Anything else -- another class, an
 * unusual type anywhere, a value stock would refuse or drop (an int outside int64, a
 * lone surrogate, an id out of range), a non-empty trace_state -- is handed to the
 * pure-Python encoder, which decides (and names the culprit); so the output of this
 * module is always the Python encoder's, byte for byte (tests/test_encoding.py checks
 * both against the stock encoder, tests/test_native_encoder.py one against the other).
 *
 * Threads: the GIL is held throughout and no Python code runs while an item is read
 * (exact builtin types and instance attributes only, and no GC-tracked allocation that
 * could start a collection and its finalizers), so nothing can change the item's dicts
 * or deques mid-read; unlike the Python encoder this needs no copies of a span that has
 * not ended or of a log record's attributes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Configured once by _encoding (module state would be cleaner; one interpreter is
 * what the SDK supports). */
static PyObject *g_fallback;         /* the Python encode_span */
static PyObject *g_trusted;          /* dict: span class -> bool (_TRUSTED_SPAN_TYPES) */
static PyTypeObject *g_readable;     /* ReadableSpan */
static PyTypeObject *g_bounded_attrs;
static PyTypeObject *g_bounded_list;
static PyTypeObject *g_event;
static PyTypeObject *g_link;
static PyTypeObject *g_span_context;
static PyTypeObject *g_trace_state;
static PyTypeObject *g_status;
static PyTypeObject *g_span_kind;
static PyObject *g_sixty_four;
static PyObject *g_log_fallback;     /* the Python encode_log */
static PyTypeObject *g_readable_log; /* ReadableLogRecord */
static PyTypeObject *g_log_record;   /* the API LogRecord */
static PyTypeObject *g_severity;     /* SeverityNumber */
static PyTypeObject *g_trace_flags;

static PyObject *s_context, *s_parent, *s_name, *s_kind, *s_start_time, *s_end_time, *s_status,
    *s_attributes, *s_events, *s_links, *s_dict, *s_dropped, *s_dq, *s_timestamp, *s_value,
    *s_status_code, *s_description, *s_log_record, *s_timestamp_l, *s_observed, *s_severity_number,
    *s_severity_text, *s_body, *s_attributes_l, *s_trace_flags, *s_trace_id, *s_span_id, *s_event_name;

/* -- output buffer ------------------------------------------------------------------ */

#define STACK_BYTES 2048

typedef struct {
    char *p;
    Py_ssize_t len;
    Py_ssize_t cap;
    char stack[STACK_BYTES];
} Buf;

/* Outcome of a writer: OK, or FALLBACK (leave it to the Python encoder; no exception
 * is pending, or it is cleared by the caller). */
#define OK 0
#define FALLBACK 1

static int grow(Buf *b, Py_ssize_t need) {
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + need) cap *= 2;
    char *q;
    if (b->p == b->stack) {
        q = PyMem_Malloc((size_t)cap);
        if (q != NULL) memcpy(q, b->p, (size_t)b->len);
    } else {
        q = PyMem_Realloc(b->p, (size_t)cap);
    }
    if (q == NULL) return FALLBACK;
    b->p = q;
    b->cap = cap;
    return OK;
}

static inline int room(Buf *b, Py_ssize_t n) { return b->len + n > b->cap ? grow(b, n) : OK; }

/* RESERVE returns: only for writers that own no references.  A writer that cleans up
 * through ``goto done`` uses RESERVE_OR_DONE, so a failed allocation still releases them. */
#define RESERVE(b, n) \
    do { if (room((b), (n)) != OK) return FALLBACK; } while (0)
#define RESERVE_OR_DONE(b, n) \
    do { if (room((b), (n)) != OK) goto done; } while (0)

static inline void put_byte(Buf *b, unsigned char c) { b->p[b->len++] = (char)c; }

static inline void put_varint(Buf *b, uint64_t v) {
    while (v >= 0x80) {
        b->p[b->len++] = (char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    b->p[b->len++] = (char)v;
}

static inline void put_le64(Buf *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b->p[b->len++] = (char)(v >> (8 * i));
}

static inline void put_le32(Buf *b, uint32_t v) {
    for (int i = 0; i < 4; i++) b->p[b->len++] = (char)(v >> (8 * i));
}

static inline void put_be64(Buf *b, uint64_t v) {
    for (int i = 7; i >= 0; i--) b->p[b->len++] = (char)(v >> (8 * i));
}

static int varint_len(uint64_t v) {
    int n = 1;
    while (v >= 0x80) { v >>= 7; n++; }
    return n;
}

/* A length-delimited field: tag now, the length once the body is written.  One byte is
 * reserved for the length; a longer one moves the body up. */
static Py_ssize_t begin_ld(Buf *b, unsigned char tag) {
    b->p[b->len++] = (char)tag;
    return b->len++;
}

static int end_ld(Buf *b, Py_ssize_t at) {
    Py_ssize_t body = b->len - at - 1;
    if (body < 0x80) {
        b->p[at] = (char)body;
        return OK;
    }
    int extra = varint_len((uint64_t)body) - 1;
    RESERVE(b, extra);
    memmove(b->p + at + 1 + extra, b->p + at + 1, (size_t)body);
    Py_ssize_t save = b->len;
    b->len = at;
    put_varint(b, (uint64_t)body);
    b->len = save + extra;
    return OK;
}

static int put_str_bytes(Buf *b, unsigned char tag, const char *s, Py_ssize_t n) {
    RESERVE(b, 11 + n);
    put_byte(b, tag);
    put_varint(b, (uint64_t)n);
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return OK;
}

/* -- reading ------------------------------------------------------------------------ */

static PyObject *attr(PyObject *obj, PyObject *name) {
    /* A new reference, or NULL with the error cleared (FALLBACK). */
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) PyErr_Clear();
    return v;
}

/* int -> uint64 within [0, 2**64); FALLBACK otherwise (the Python side decides). */
static int as_u64(PyObject *v, uint64_t *out) {
    if (!PyLong_CheckExact(v)) return FALLBACK;
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return FALLBACK;
    }
    *out = (uint64_t)x;
    return OK;
}

static int as_id128(PyObject *v, uint64_t *hi, uint64_t *lo) {
    if (!PyLong_CheckExact(v)) return FALLBACK;
    PyObject *h = PyNumber_Rshift(v, g_sixty_four);
    if (h == NULL) {
        PyErr_Clear();
        return FALLBACK;
    }
    int r = as_u64(h, hi);
    Py_DECREF(h);
    if (r != OK) return FALLBACK;
    *lo = (uint64_t)PyLong_AsUnsignedLongLongMask(v);
    return OK;
}

/* is_remote: a bool, or -1 (anything else could run Python code to answer). */
static int is_true(PyObject *v) {
    if (v == Py_True) return 1;
    if (v == Py_False) return 0;
    return -1;
}

/* A dropped count (uint32 field): omitted when 0. */
static int put_count(Buf *b, unsigned char tag, PyObject *v) {
    uint64_t n;
    if (as_u64(v, &n) != OK || n >= ((uint64_t)1 << 32)) return FALLBACK;
    if (n) {
        RESERVE(b, 6);
        put_byte(b, tag);
        put_varint(b, n);
    }
    return OK;
}

/* -- AnyValue / KeyValue ------------------------------------------------------------ */

#define MAX_DEPTH 16 /* deeper (or a cycle): the Python encoder decides */

static int put_kv_body(Buf *b, PyObject *key, PyObject *value, int depth);

/* The body of an AnyValue, in stock ``_encode_value``'s order for the exact builtin types. */
static int put_any_body(Buf *b, PyObject *v, int depth) {
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) {  /* a lone surrogate: stock drops the pair */
            PyErr_Clear();
            return FALLBACK;
        }
        return put_str_bytes(b, 0x0a, s, n);
    }
    if (v == Py_True || v == Py_False) {
        RESERVE(b, 2);
        put_byte(b, 0x10);
        put_byte(b, v == Py_True);
        return OK;
    }
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) {  /* outside int64: stock drops the pair */
            PyErr_Clear();
            return FALLBACK;
        }
        RESERVE(b, 11);
        put_byte(b, 0x18);
        put_varint(b, (uint64_t)x);
        return OK;
    }
    if (PyFloat_CheckExact(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        RESERVE(b, 9);
        put_byte(b, 0x21);
        put_le64(b, bits);
        return OK;
    }
    if (v == Py_None) return OK;  /* an empty AnyValue, present */
    if (PyBytes_CheckExact(v)) return put_str_bytes(b, 0x3a, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    if (depth >= MAX_DEPTH) return FALLBACK;
    if (PyTuple_CheckExact(v) || PyList_CheckExact(v)) {
        RESERVE(b, 2);
        Py_ssize_t at = begin_ld(b, 0x2a);
        /* By index, re-reading the size: nothing here runs Python code, but be exact anyway. */
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(v); i++) {
            RESERVE(b, 2);
            Py_ssize_t item = begin_ld(b, 0x0a);
            if (put_any_body(b, PySequence_Fast_GET_ITEM(v, i), depth + 1) != OK) return FALLBACK;
            if (end_ld(b, item) != OK) return FALLBACK;
        }
        return end_ld(b, at);
    }
    if (PyDict_CheckExact(v)) {
        RESERVE(b, 2);
        Py_ssize_t at = begin_ld(b, 0x32);
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(v, &pos, &key, &value)) {
            RESERVE(b, 2);
            Py_ssize_t kv = begin_ld(b, 0x0a);
            if (put_kv_body(b, key, value, depth + 1) != OK) return FALLBACK;
            if (end_ld(b, kv) != OK) return FALLBACK;
        }
        return end_ld(b, at);
    }
    return FALLBACK;  /* other types (and str keys' subclasses): the Python encoder */
}

/* KeyValue body: key (omitted when empty), then the AnyValue, always present. */
static int put_kv_body(Buf *b, PyObject *key, PyObject *value, int depth) {
    if (!PyUnicode_CheckExact(key)) return FALLBACK;  /* stock passes keys through str() */
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(key, &n);
    if (s == NULL) {
        PyErr_Clear();
        return FALLBACK;
    }
    if (n && put_str_bytes(b, 0x0a, s, n) != OK) return FALLBACK;
    RESERVE(b, 2);
    Py_ssize_t val = begin_ld(b, 0x12);
    if (put_any_body(b, value, depth) != OK) return FALLBACK;
    return end_ld(b, val);
}

static int put_kv(Buf *b, unsigned char tag, PyObject *key, PyObject *value) {
    RESERVE(b, 2);
    Py_ssize_t at = begin_ld(b, tag);
    if (put_kv_body(b, key, value, 0) != OK) return FALLBACK;
    return end_ld(b, at);
}

/* The KeyValue fields of an attributes container, then its dropped count. */
static int put_attributes(Buf *b, unsigned char tag, unsigned char dropped_tag, PyObject *attrs) {
    if (attrs == Py_None) return OK;
    PyObject *dict;
    PyObject *dropped = NULL;
    if (Py_TYPE(attrs) == g_bounded_attrs) {
        dict = attr(attrs, s_dict);
        if (dict == NULL) return FALLBACK;
        dropped = attr(attrs, s_dropped);
        if (dropped == NULL) {
            Py_DECREF(dict);
            return FALLBACK;
        }
    } else if (PyDict_CheckExact(attrs)) {
        dict = attrs;
        Py_INCREF(dict);
    } else {
        return FALLBACK;
    }
    int r = OK;
    if (!PyDict_CheckExact(dict)) {
        r = FALLBACK;
    } else {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(dict, &pos, &key, &value)) {
            if ((r = put_kv(b, tag, key, value)) != OK) break;
        }
    }
    if (r == OK && dropped != NULL) r = put_count(b, dropped_tag, dropped);
    Py_DECREF(dict);
    Py_XDECREF(dropped);
    return r;
}

/* (iterable of the items, dropped count) of a span's events or links. */
static int list_parts(PyObject *seq, PyObject **items, PyObject **dropped) {
    if (Py_TYPE(seq) == g_bounded_list) {
        *items = attr(seq, s_dq);
        if (*items == NULL) return FALLBACK;
        *dropped = attr(seq, s_dropped);
        if (*dropped == NULL) {
            Py_CLEAR(*items);
            return FALLBACK;
        }
        return OK;
    }
    if (PyTuple_CheckExact(seq) || PyList_CheckExact(seq)) {
        Py_INCREF(seq);
        *items = seq;
        *dropped = NULL;
        return OK;
    }
    return FALLBACK;
}

/* -- span parts --------------------------------------------------------------------- */

/* A fixed64 timestamp field: None and 0 omitted, like the Python encoder. */
static int put_time(Buf *b, unsigned char tag, PyObject *ts) {
    if (ts == Py_None) return OK;
    uint64_t t;
    if (as_u64(ts, &t) != OK) return FALLBACK;
    if (t) {
        RESERVE(b, 9);
        put_byte(b, tag);
        put_le64(b, t);
    }
    return OK;
}

/* A string field omitted when None or empty; anything but an exact str: FALLBACK. */
static int put_opt_str(Buf *b, unsigned char tag, PyObject *v) {
    if (v == Py_None) return OK;
    if (!PyUnicode_CheckExact(v)) return FALLBACK;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) {
        PyErr_Clear();
        return FALLBACK;
    }
    return n ? put_str_bytes(b, tag, s, n) : OK;
}


static int put_event(Buf *b, PyObject *event) {
    if (Py_TYPE(event) != g_event) return FALLBACK;
    int r = FALLBACK;
    PyObject *name = attr(event, s_name);
    PyObject *ts = attr(event, s_timestamp);
    PyObject *attrs = attr(event, s_attributes);
    if (name == NULL || ts == NULL || attrs == NULL) goto done;
    RESERVE_OR_DONE(b, 2);
    Py_ssize_t at = begin_ld(b, 0x5a);
    if (put_time(b, 0x09, ts) != OK || put_opt_str(b, 0x12, name) != OK) goto done;
    if (put_attributes(b, 0x1a, 0x20, attrs) != OK) goto done;
    r = end_ld(b, at);
done:
    Py_XDECREF(name);
    Py_XDECREF(ts);
    Py_XDECREF(attrs);
    return r;
}

static int put_link(Buf *b, PyObject *link) {
    if (Py_TYPE(link) != g_link) return FALLBACK;
    int r = FALLBACK;
    PyObject *ctx = attr(link, s_context);
    PyObject *attrs = attr(link, s_attributes);
    if (ctx == NULL || attrs == NULL || Py_TYPE(ctx) != g_span_context || PyTuple_GET_SIZE(ctx) < 3) goto done;
    uint64_t hi, lo, sid;
    if (as_id128(PyTuple_GET_ITEM(ctx, 0), &hi, &lo) != OK || as_u64(PyTuple_GET_ITEM(ctx, 1), &sid) != OK)
        goto done;
    int remote = is_true(PyTuple_GET_ITEM(ctx, 2));
    if (remote < 0) goto done;
    RESERVE_OR_DONE(b, 2 + 28);
    Py_ssize_t at = begin_ld(b, 0x6a);
    put_byte(b, 0x0a);
    put_byte(b, 16);
    put_be64(b, hi);
    put_be64(b, lo);
    put_byte(b, 0x12);
    put_byte(b, 8);
    put_be64(b, sid);
    if (put_attributes(b, 0x22, 0x28, attrs) != OK) goto done;
    RESERVE_OR_DONE(b, 5);
    put_byte(b, 0x35);
    put_le32(b, remote ? 0x300 : 0x100);
    r = end_ld(b, at);
done:
    Py_XDECREF(ctx);
    Py_XDECREF(attrs);
    return r;
}

static int put_list(Buf *b, PyObject *seq, int (*put)(Buf *, PyObject *), unsigned char dropped_tag) {
    PyObject *items, *dropped;
    if (list_parts(seq, &items, &dropped) != OK) return FALLBACK;
    int r = OK;
    /* By index, not through an iterator: an iterator is a GC-tracked allocation, which could
     * start a collection, whose finalizers could run Python code mid-read. */
    Py_ssize_t n = PySequence_Size(items);
    if (n < 0) {
        PyErr_Clear();
        r = FALLBACK;
    }
    for (Py_ssize_t i = 0; r == OK && i < n; i++) {
        PyObject *item = PySequence_GetItem(items, i);
        if (item == NULL) {
            PyErr_Clear();
            r = FALLBACK;
            break;
        }
        r = put(b, item);
        Py_DECREF(item);
    }
    if (r == OK && dropped != NULL) r = put_count(b, dropped_tag, dropped);
    Py_DECREF(items);
    Py_XDECREF(dropped);
    return r;
}

/* Status (field 15): always present; message then code, each omitted when empty. */
static int put_status(Buf *b, PyObject *status) {
    if (Py_TYPE(status) != g_status) return FALLBACK;
    int r = FALLBACK;
    PyObject *code = attr(status, s_status_code);
    PyObject *desc = attr(status, s_description);
    PyObject *value = NULL;
    if (code == NULL || desc == NULL) goto done;
    value = attr(code, s_value);
    uint64_t c;
    if (value == NULL || as_u64(value, &c) != OK || c > 2) goto done;
    RESERVE_OR_DONE(b, 4);
    Py_ssize_t at = begin_ld(b, 0x7a);
    if (put_opt_str(b, 0x12, desc) != OK) goto done;
    if (c) {
        RESERVE_OR_DONE(b, 2);
        put_byte(b, 0x18);
        put_byte(b, (unsigned char)c);
    }
    r = end_ld(b, at);
done:
    Py_XDECREF(code);
    Py_XDECREF(desc);
    Py_XDECREF(value);
    return r;
}

/* The whole Span message into b; FALLBACK leaves it to the Python encoder. */
static int put_span(Buf *b, PyObject *span) {
    int r = FALLBACK;
    PyObject *ctx = NULL, *parent = NULL, *name = NULL, *kind = NULL, *kind_value = NULL, *start = NULL,
             *end = NULL, *attrs = NULL, *events = NULL, *links = NULL, *status = NULL;
    if ((ctx = attr(span, s_context)) == NULL || (parent = attr(span, s_parent)) == NULL ||
        (name = attr(span, s_name)) == NULL || (kind = attr(span, s_kind)) == NULL ||
        (start = attr(span, s_start_time)) == NULL || (end = attr(span, s_end_time)) == NULL ||
        (attrs = attr(span, s_attributes)) == NULL || (events = attr(span, s_events)) == NULL ||
        (links = attr(span, s_links)) == NULL || (status = attr(span, s_status)) == NULL)
        goto done;

    if (Py_TYPE(ctx) != g_span_context || PyTuple_GET_SIZE(ctx) < 5) goto done;
    uint64_t hi, lo, sid;
    if (as_id128(PyTuple_GET_ITEM(ctx, 0), &hi, &lo) != OK || as_u64(PyTuple_GET_ITEM(ctx, 1), &sid) != OK)
        goto done;
    PyObject *trace_state = PyTuple_GET_ITEM(ctx, 4);
    if (trace_state != Py_None) {
        /* Only an empty one here: a non-empty trace_state is written by the Python side. */
        if (Py_TYPE(trace_state) != g_trace_state) goto done;
        PyObject *d = attr(trace_state, s_dict);
        if (d == NULL) goto done;
        int empty = PyDict_CheckExact(d) && PyDict_GET_SIZE(d) == 0;
        Py_DECREF(d);
        if (!empty) goto done;
    }
    int has_parent = 0, remote = 0;
    uint64_t psid = 0;
    if (parent != Py_None) {
        if (Py_TYPE(parent) != g_span_context || PyTuple_GET_SIZE(parent) < 3) goto done;
        if (as_u64(PyTuple_GET_ITEM(parent, 1), &psid) != OK) goto done;
        remote = is_true(PyTuple_GET_ITEM(parent, 2));
        if (remote < 0) goto done;
        has_parent = 1;
    }
    RESERVE_OR_DONE(b, 38);
    put_byte(b, 0x0a);
    put_byte(b, 16);
    put_be64(b, hi);
    put_be64(b, lo);
    put_byte(b, 0x12);
    put_byte(b, 8);
    put_be64(b, sid);
    if (has_parent) {
        put_byte(b, 0x22);
        put_byte(b, 8);
        put_be64(b, psid);
    }
    if (put_opt_str(b, 0x2a, name) != OK) goto done;
    uint64_t k, t0, t1;
    if (Py_TYPE(kind) != g_span_kind || (kind_value = attr(kind, s_value)) == NULL ||
        as_u64(kind_value, &k) != OK || k > 126)
        goto done;
    if (as_u64(start, &t0) != OK || as_u64(end, &t1) != OK || t0 == 0 || t1 == 0) goto done;
    RESERVE_OR_DONE(b, 20);
    put_byte(b, 0x30);
    put_byte(b, (unsigned char)(k + 1));
    put_byte(b, 0x39);
    put_le64(b, t0);
    put_byte(b, 0x41);
    put_le64(b, t1);
    if (put_attributes(b, 0x4a, 0x50, attrs) != OK) goto done;
    if (put_list(b, events, put_event, 0x60) != OK) goto done;
    if (put_list(b, links, put_link, 0x70) != OK) goto done;
    if (put_status(b, status) != OK) goto done;
    RESERVE_OR_DONE(b, 6);
    put_byte(b, 0x85);
    put_byte(b, 0x01);
    put_le32(b, remote ? 0x300 : 0x100);
    r = OK;
done:
    Py_XDECREF(ctx);
    Py_XDECREF(parent);
    Py_XDECREF(name);
    Py_XDECREF(kind);
    Py_XDECREF(kind_value);
    Py_XDECREF(start);
    Py_XDECREF(end);
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    Py_XDECREF(links);
    Py_XDECREF(status);
    return r;
}

/* -- log records -------------------------------------------------------------------- */

static int put_log(Buf *b, PyObject *record) {
    int r = FALLBACK;
    PyObject *lr = attr(record, s_log_record);
    if (lr == NULL) return FALLBACK;
    PyObject *ts = NULL, *sev = NULL, *sev_value = NULL, *text = NULL, *body = NULL, *attrs = NULL,
             *flags = NULL, *tid = NULL, *sid = NULL, *observed = NULL, *event_name = NULL;
    if (Py_TYPE(lr) != g_log_record) goto done;
    if ((ts = attr(lr, s_timestamp_l)) == NULL || (sev = attr(lr, s_severity_number)) == NULL ||
        (text = attr(lr, s_severity_text)) == NULL || (body = attr(lr, s_body)) == NULL ||
        (attrs = attr(lr, s_attributes_l)) == NULL || (flags = attr(lr, s_trace_flags)) == NULL ||
        (tid = attr(lr, s_trace_id)) == NULL || (sid = attr(lr, s_span_id)) == NULL ||
        (observed = attr(lr, s_observed)) == NULL || (event_name = attr(lr, s_event_name)) == NULL)
        goto done;
    if (put_time(b, 0x09, ts) != OK) goto done;
    if (sev != Py_None) {
        uint64_t v;
        if (Py_TYPE(sev) != g_severity || (sev_value = attr(sev, s_value)) == NULL ||
            as_u64(sev_value, &v) != OK || v > 127)
            goto done;
        if (v) {
            RESERVE_OR_DONE(b, 2);
            put_byte(b, 0x10);
            put_byte(b, (unsigned char)v);
        }
    }
    if (put_opt_str(b, 0x1a, text) != OK) goto done;
    RESERVE_OR_DONE(b, 2);
    Py_ssize_t at = begin_ld(b, 0x2a); /* present even for a None body */
    if (put_any_body(b, body, 0) != OK || end_ld(b, at) != OK) goto done;
    if (put_attributes(b, 0x32, 0x38, attrs) != OK) goto done;
    if (Py_TYPE(flags) != g_trace_flags && !PyLong_CheckExact(flags)) goto done;
    unsigned long long f = PyLong_AsUnsignedLongLong(flags);
    if (f == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        goto done;
    }
    if (f >= ((unsigned long long)1 << 32)) goto done;
    if (f) {
        RESERVE_OR_DONE(b, 5);
        put_byte(b, 0x45);
        put_le32(b, (uint32_t)f);
    }
    uint64_t hi, lo, span;
    if (!PyLong_CheckExact(tid) || !PyLong_CheckExact(sid)) goto done;
    if (as_id128(tid, &hi, &lo) != OK || as_u64(sid, &span) != OK) goto done;
    RESERVE_OR_DONE(b, 28);
    if (hi || lo) {
        put_byte(b, 0x4a);
        put_byte(b, 16);
        put_be64(b, hi);
        put_be64(b, lo);
    }
    if (span) {
        put_byte(b, 0x52);
        put_byte(b, 8);
        put_be64(b, span);
    }
    if (put_time(b, 0x59, observed) != OK) goto done;
    if (put_opt_str(b, 0x62, event_name) != OK) goto done;
    r = OK;
done:
    Py_DECREF(lr);
    Py_XDECREF(ts);
    Py_XDECREF(sev);
    Py_XDECREF(sev_value);
    Py_XDECREF(text);
    Py_XDECREF(body);
    Py_XDECREF(attrs);
    Py_XDECREF(flags);
    Py_XDECREF(tid);
    Py_XDECREF(sid);
    Py_XDECREF(observed);
    Py_XDECREF(event_name);
    return r;
}

/* -- module ------------------------------------------------------------------------- */

/* The message ``put`` writes for ``item`` as bytes; None where it hands the item back. */
/* -- size estimate (scheduling._classify.estimate_span_bytes, same integer) ---------- */

static PyObject *g_fast_spans; /* frozenset: the span classes whose fields may be read (FAST_SPANS) */

/* _value_bytes of a value inside a list or tuple; -1: leave the span to the Python estimate. */
static Py_ssize_t est_value(PyObject *v, int depth) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type) return PyUnicode_GET_LENGTH(v) + 4;
    if (t == &PyBool_Type || t == &PyLong_Type || t == &PyFloat_Type) return 11;
    if (t == &PyBytes_Type) return PyBytes_GET_SIZE(v) + 4;
    if ((t == &PyTuple_Type || t == &PyList_Type) && depth < MAX_DEPTH) {
        Py_ssize_t total = 4;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(v); i++) {
            Py_ssize_t n = est_value(PySequence_Fast_GET_ITEM(v, i), depth + 1);
            if (n < 0) return -1;
            total += n + 2;
        }
        return total;
    }
    return -1; /* a mapping, a subclass, anything else: the Python estimate decides */
}

/* _attributes_bytes; -1: leave the span to the Python estimate. */
static Py_ssize_t est_attributes(PyObject *attrs) {
    if (attrs == Py_None) return 0;
    PyObject *dict;
    if (Py_TYPE(attrs) == g_bounded_attrs) {
        if ((dict = attr(attrs, s_dict)) == NULL) return -1;
    } else if (PyDict_CheckExact(attrs)) {
        dict = attrs;
        Py_INCREF(dict);
    } else {
        return -1;
    }
    Py_ssize_t total = 0;
    if (!PyDict_CheckExact(dict)) {
        total = -1;
    } else {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(dict, &pos, &key, &value)) {
            if (!PyUnicode_CheckExact(key)) {
                total = -1;
                break;
            }
            Py_ssize_t k = PyUnicode_GET_LENGTH(key);
            PyTypeObject *t = Py_TYPE(value);
            if (t == &PyUnicode_Type) {
                total += k + PyUnicode_GET_LENGTH(value) + 10;
            } else if (t == &PyLong_Type || t == &PyFloat_Type || t == &PyBool_Type) {
                total += k + 17;
            } else {
                Py_ssize_t n = est_value(value, 0);
                if (n < 0) {
                    total = -1;
                    break;
                }
                total += k + 6 + n;
            }
        }
    }
    Py_DECREF(dict);
    return total;
}

/* The summed estimate of a span's events (per_item 16 + name) or links (per_item 40); -1: Python. */
static Py_ssize_t est_list(PyObject *seq, PyTypeObject *cls, Py_ssize_t per_item, int named) {
    if (seq == Py_None) return 0;
    PyObject *items, *dropped;
    if (list_parts(seq, &items, &dropped) != OK) return -1;
    Py_XDECREF(dropped);
    Py_ssize_t total = 0;
    Py_ssize_t n = PySequence_Size(items);
    if (n < 0) {
        PyErr_Clear();
        total = -1;
    }
    for (Py_ssize_t i = 0; total >= 0 && i < n; i++) {
        PyObject *item = PySequence_GetItem(items, i);
        if (item == NULL) {
            PyErr_Clear();
            total = -1;
            break;
        }
        Py_ssize_t part = -1;
        if (Py_TYPE(item) == cls) {
            PyObject *attrs = attr(item, s_attributes);
            PyObject *name = named ? attr(item, s_name) : NULL;
            if (attrs != NULL && (!named || name != NULL)) {
                part = est_attributes(attrs);
                if (part >= 0 && named) {
                    if (PyUnicode_CheckExact(name))
                        part += PyUnicode_GET_LENGTH(name);
                    else if (name != Py_None)
                        part = -1;
                }
            }
            Py_XDECREF(attrs);
            Py_XDECREF(name);
        }
        Py_DECREF(item);
        total = part < 0 ? -1 : total + per_item + part;
    }
    Py_DECREF(items);
    return total;
}

static Py_ssize_t est_span(PyObject *span) {
    Py_ssize_t total = -1;
    PyObject *name = NULL, *attrs = NULL, *events = NULL, *links = NULL, *status = NULL, *desc = NULL;
    if ((name = attr(span, s_name)) == NULL || (attrs = attr(span, s_attributes)) == NULL ||
        (events = attr(span, s_events)) == NULL || (links = attr(span, s_links)) == NULL ||
        (status = attr(span, s_status)) == NULL)
        goto done;
    Py_ssize_t n = 64, part;
    if (PyUnicode_CheckExact(name))
        n += PyUnicode_GET_LENGTH(name);
    else if (name != Py_None)
        goto done;
    if ((part = est_attributes(attrs)) < 0) goto done;
    n += part;
    if ((part = est_list(events, g_event, 16, 1)) < 0) goto done;
    n += part;
    if ((part = est_list(links, g_link, 40, 0)) < 0) goto done;
    n += part;
    if (status != Py_None) {
        if (Py_TYPE(status) != g_status || (desc = attr(status, s_description)) == NULL) goto done;
        if (PyUnicode_CheckExact(desc))
            n += PyUnicode_GET_LENGTH(desc) ? PyUnicode_GET_LENGTH(desc) + 4 : 0;
        else if (desc != Py_None)
            goto done;
    }
    total = n;
done:
    Py_XDECREF(name);
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    Py_XDECREF(links);
    Py_XDECREF(status);
    Py_XDECREF(desc);
    return total;
}

static PyObject *estimate_span(PyObject *self, PyObject *span) {
    (void)self;
    if (g_fast_spans == NULL || g_bounded_attrs == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "otel_sched.otlp._speedups.configure_estimate() was not called");
        return NULL;
    }
    int fast = PySet_Contains(g_fast_spans, (PyObject *)Py_TYPE(span));
    if (fast < 0) return NULL;
    Py_ssize_t n = fast ? est_span(span) : -1;
    if (n < 0) Py_RETURN_NONE;
    return PyLong_FromSsize_t(n);
}

static PyObject *configure_estimate(PyObject *self, PyObject *fast_spans) {
    (void)self;
    if (!PyFrozenSet_CheckExact(fast_spans)) {
        PyErr_Format(PyExc_TypeError, "configure_estimate(): expected a frozenset of classes, got %R", fast_spans);
        return NULL;
    }
    Py_INCREF(fast_spans);
    Py_XSETREF(g_fast_spans, fast_spans);
    Py_RETURN_NONE;
}


static PyObject *encoded(int (*put)(Buf *, PyObject *), PyObject *item) {
    Buf b;
    b.p = b.stack;
    b.len = 0;
    b.cap = STACK_BYTES;
    PyObject *out = NULL;
    if (put(&b, item) == OK) out = PyBytes_FromStringAndSize(b.p, b.len);
    if (b.p != b.stack) PyMem_Free(b.p);
    if (out != NULL) return out;
    PyErr_Clear();
    Py_RETURN_NONE;
}

/* try_encode(item), or else fallback(item): the Python encoder then decides. */
static PyObject *or_fallback(PyObject *out, PyObject *fallback, PyObject *item) {
    if (out != Py_None) return out; /* the bytes, or NULL with the error set */
    Py_DECREF(out);
    return PyObject_CallOneArg(fallback, item);
}

static PyObject *try_encode_span(PyObject *self, PyObject *span);

static PyObject *encode_span(PyObject *self, PyObject *span) {
    return or_fallback(try_encode_span(self, span), g_fallback, span); /* it also judges new classes */
}

static PyObject *try_encode_span(PyObject *self, PyObject *span) {
    (void)self;
    if (g_fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "otel_sched.otlp._speedups.configure() was not called");
        return NULL;
    }
    PyTypeObject *cls = Py_TYPE(span);
    if (cls != g_readable) {
        PyObject *trusted = PyDict_GetItemWithError(g_trusted, (PyObject *)cls);
        if (trusted != Py_True) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE;
        }
    }
    return encoded(put_span, span);
}

static PyObject *try_encode_log(PyObject *self, PyObject *record) {
    (void)self;
    if (g_log_fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "otel_sched.otlp._speedups.configure_logs() was not called");
        return NULL;
    }
    if (Py_TYPE(record) != g_readable_log) Py_RETURN_NONE;
    return encoded(put_log, record);
}

static PyObject *encode_log(PyObject *self, PyObject *record) {
    return or_fallback(try_encode_log(self, record), g_log_fallback, record);
}

static int take_type(PyObject *obj, PyTypeObject **slot, const char *what) {
    if (!PyType_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "configure(): %s must be a class, got %R", what, obj);
        return -1;
    }
    Py_INCREF(obj);
    Py_XSETREF(*slot, (PyTypeObject *)obj);
    return 0;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *fallback, *trusted, *types[9];
    if (!PyArg_ParseTuple(args, "OO!OOOOOOOOO:configure", &fallback, &PyDict_Type, &trusted, &types[0],
                          &types[1], &types[2], &types[3], &types[4], &types[5], &types[6], &types[7],
                          &types[8]))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_Format(PyExc_TypeError, "configure(): fallback must be callable, got %R", fallback);
        return NULL;
    }
    static const char *names[9] = {"ReadableSpan", "BoundedAttributes", "BoundedList", "Event", "Link",
                                   "SpanContext", "TraceState", "Status", "SpanKind"};
    PyTypeObject **slots[9] = {&g_readable, &g_bounded_attrs, &g_bounded_list, &g_event, &g_link,
                               &g_span_context, &g_trace_state, &g_status, &g_span_kind};
    for (int i = 0; i < 9; i++)
        if (take_type(types[i], slots[i], names[i]) < 0) return NULL;
    Py_INCREF(fallback);
    Py_XSETREF(g_fallback, fallback);
    Py_INCREF(trusted);
    Py_XSETREF(g_trusted, trusted);
    Py_RETURN_NONE;
}

static PyObject *configure_logs(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *fallback, *types[4];
    if (!PyArg_ParseTuple(args, "OOOOO:configure_logs", &fallback, &types[0], &types[1], &types[2], &types[3]))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_Format(PyExc_TypeError, "configure_logs(): fallback must be callable, got %R", fallback);
        return NULL;
    }
    static const char *names[4] = {"ReadableLogRecord", "LogRecord", "SeverityNumber", "TraceFlags"};
    PyTypeObject **slots[4] = {&g_readable_log, &g_log_record, &g_severity, &g_trace_flags};
    for (int i = 0; i < 4; i++)
        if (take_type(types[i], slots[i], names[i]) < 0) return NULL;
    Py_INCREF(fallback);
    Py_XSETREF(g_log_fallback, fallback);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(fallback, trusted, ReadableSpan, BoundedAttributes, BoundedList, Event, Link, "
     "SpanContext, TraceState, Status, SpanKind)\n--\n\nThe SDK classes to read and the Python encoder "
     "to hand everything else to."},
    {"encode_span", encode_span, METH_O,
     "encode_span(span)\n--\n\nSerialized OTLP Span message; what this module does not handle goes to "
     "the configured Python encoder."},
    {"try_encode_span", try_encode_span, METH_O,
     "try_encode_span(span)\n--\n\nThe Span message, or None where encode_span would hand the span to "
     "the Python encoder."},
    {"configure_logs", configure_logs, METH_VARARGS,
     "configure_logs(fallback, ReadableLogRecord, LogRecord, SeverityNumber, TraceFlags)\n--\n\nThe "
     "SDK classes of log records and the Python encoder to hand everything else to."},
    {"encode_log", encode_log, METH_O,
     "encode_log(record)\n--\n\nSerialized OTLP LogRecord message; what this module does not handle "
     "goes to the configured Python encoder."},
    {"try_encode_log", try_encode_log, METH_O,
     "try_encode_log(record)\n--\n\nThe LogRecord message, or None where encode_log would hand the "
     "record to the Python encoder."},
    {"configure_estimate", configure_estimate, METH_O,
     "configure_estimate(fast_spans)\n--\n\nThe span classes whose fields estimate_span may read "
     "(otel_sched._sdk_fields.FAST_SPANS); configure() must have been called too."},
    {"estimate_span", estimate_span, METH_O,
     "estimate_span(span)\n--\n\nscheduling._classify.estimate_span_bytes(span), or None where this "
     "module leaves the span to it (a class or a value it does not read)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "otel_sched.otlp._speedups",
    "Compiled OTLP span and log record encoder; see otel_sched.otlp._encoding.", -1, methods, NULL, NULL, NULL, NULL,
};

#define INTERN(var, text) \
    do { if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL; } while (0)

PyMODINIT_FUNC PyInit__speedups(void) {
    INTERN(s_context, "_context");
    INTERN(s_parent, "_parent");
    INTERN(s_name, "_name");
    INTERN(s_kind, "_kind");
    INTERN(s_start_time, "_start_time");
    INTERN(s_end_time, "_end_time");
    INTERN(s_status, "_status");
    INTERN(s_attributes, "_attributes");
    INTERN(s_events, "_events");
    INTERN(s_links, "_links");
    INTERN(s_dict, "_dict");
    INTERN(s_dropped, "dropped");
    INTERN(s_dq, "_dq");
    INTERN(s_timestamp, "_timestamp");
    INTERN(s_value, "_value_");
    INTERN(s_status_code, "_status_code");
    INTERN(s_description, "_description");
    INTERN(s_log_record, "log_record");
    INTERN(s_timestamp_l, "timestamp");
    INTERN(s_observed, "observed_timestamp");
    INTERN(s_severity_number, "severity_number");
    INTERN(s_severity_text, "severity_text");
    INTERN(s_body, "body");
    INTERN(s_attributes_l, "attributes");
    INTERN(s_trace_flags, "trace_flags");
    INTERN(s_trace_id, "trace_id");
    INTERN(s_span_id, "span_id");
    INTERN(s_event_name, "event_name");
    if ((g_sixty_four = PyLong_FromLong(64)) == NULL) return NULL;
    PyObject *m = PyModule_Create(&module);
#ifdef Py_GIL_DISABLED
    /* Py_mod_gil for a single-phase module.  The encoder reads an item's containers without locking
       them and keeps module-level state (configure_logs): it relies on the GIL.  setup.py does not
       build it for free-threaded interpreters; a hand-made build at least says so, and importing it
       re-enables the GIL with the interpreter's own warning instead of racing. */
    if (m != NULL && PyUnstable_Module_SetGIL(m, Py_MOD_GIL_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
