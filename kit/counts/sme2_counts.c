/*
 * sme2_counts: a QEMU TCG plugin that counts the instructions an emulated Armv9 CPU retires, by
 * class, and snapshots the counters every time the guest reads a clock.
 *
 * - Each instruction is classified once, when QEMU translates its block (A64 top-level encoding
 *   groups; the SME space split into outer products, other ZA/multi-vector data processing and
 *   ZA/multi-vector loads and stores). A block adds its per-class totals to per-vCPU counters with
 *   inline operations when it starts, so counting costs a few host instructions per block.
 * - Streaming mode: SMSTART/SMSTOP (MSR SVCRSM/SVCRSMZA, #imm) snapshot the counters, so every
 *   class also has the part retired in streaming mode (what an SME2 kernel runs between them).
 * - Bytes loaded and stored: a memory callback adds each access's size (optional: bytes=off).
 * - Attribution: ETDump's timestamps and XNNPACK's per-operator timer are clock_gettime calls
 *   (a syscall under qemu-user, vDSO included). On each successful clock_gettime the plugin reads
 *   the timespec the guest got and records (vCPU, clock id, nanoseconds, counters). The profiler
 *   matches those nanosecond values to the trace's event timestamps (kit/counts/attribution.py).
 *
 * Arguments: out=<file> (required), bytes=on|off (default on).
 * Output (text): "# sme2-counts 1", a "classes" line, one "R" line per clock read, one "T" line
 * (totals) per vCPU:  R vcpu clock ns c[0..N) s[0..N) bytes_loaded bytes_stored
 *                     T vcpu c[0..N) s[0..N) bytes_loaded bytes_stored
 * where c are the class counts and s the streaming-mode part of each.
 */
#include <glib.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum cls {
    C_SME_OUTER, /* FMOPA, BFMOPA, SMOPA, UMOPA, SUMOPA, USMOPA, BMOPA, FMOP4A ... */
    C_SME_ZA,    /* other SME/SME2 data processing: MOVA, ZERO, ADDHA, multi-vector ops into ZA */
    C_SME_MEM,   /* ZA loads/stores (LD1/ST1 tile slices, LDR/STR ZA/ZT0), multi-vector LD1/ST1 */
    C_SVE,       /* SVE/SVE2 data processing */
    C_SVE_MEM,   /* SVE loads/stores, prefetches */
    C_SIMD,      /* Advanced SIMD (Neon) data processing, crypto */
    C_SIMD_MEM,  /* loads/stores of SIMD&FP registers */
    C_FP,        /* scalar floating point */
    C_INT,       /* scalar integer data processing */
    C_INT_MEM,   /* loads/stores of general-purpose registers, atomics */
    C_BRANCH,    /* B, BL, B.cond, CBZ, TBZ, BR, BLR, RET */
    C_SYSTEM,    /* system, hints, barriers, exceptions (SVC), SMSTART/SMSTOP */
    C_OTHER,     /* unallocated or reserved encodings */
    NCLASS
};

static const char *class_names[NCLASS] = {
    "sme_outer", "sme_za", "sme_mem", "sve", "sve_mem", "simd", "simd_mem",
    "fp", "int", "int_mem", "branch", "system", "other",
};

typedef struct {
    uint64_t counts[NCLASS];
    uint64_t streaming[NCLASS]; /* closed streaming intervals */
    uint64_t snap[NCLASS];      /* counts at the last SMSTART */
    uint64_t bytes_loaded;
    uint64_t bytes_stored;
    uint64_t in_streaming;
    uint64_t ts_ptr;   /* clock_gettime's timespec pointer, between entry and return */
    int64_t ts_clock;
    uint64_t ts_pending;
} VcpuState;

typedef struct {
    uint32_t vcpu;
    int32_t clock;
    uint64_t ns;
    uint64_t counts[NCLASS];
    uint64_t streaming[NCLASS];
    uint64_t bytes_loaded;
    uint64_t bytes_stored;
} Record;

typedef struct {
    int start;                  /* 1: SMSTART SM, 0: SMSTOP SM */
    uint64_t suffix[NCLASS];    /* already added at block start but not yet retired */
} SvcrSite;

#define NR_CLOCK_GETTIME 113 /* aarch64 */

static struct qemu_plugin_scoreboard *score;
static GArray *records;
static GMutex lock;
static char *out_path;
static bool count_bytes = true;

static enum cls classify(uint32_t insn)
{
    uint32_t op1 = (insn >> 25) & 0xf;
    if (op1 == 0x0) {
        if (!(insn >> 31)) {
            return C_OTHER;
        }
        switch ((insn >> 29) & 7) {
        case 4:
            return C_SME_OUTER;
        case 5: /* integer outer products have bit 23 set; the rest are multi-vector LD1/ST1 */
            return (insn >> 23) & 1 ? C_SME_OUTER : C_SME_MEM;
        case 6:
            return C_SME_ZA;
        default:
            return C_SME_MEM;
        }
    }
    if (op1 == 0x2) {
        return (insn >> 31) ? C_SVE_MEM : C_SVE;
    }
    if (op1 == 0x1 || op1 == 0x3) {
        return C_OTHER;
    }
    if ((op1 & 0xe) == 0x8) {
        return C_INT; /* data processing, immediate */
    }
    if ((op1 & 0xe) == 0xa) {
        if ((insn & 0x7c000000) == 0x14000000 || (insn & 0xff000000) == 0x54000000 ||
            (insn & 0x7c000000) == 0x34000000 || (insn & 0xfe000000) == 0xd6000000) {
            return C_BRANCH;
        }
        return C_SYSTEM;
    }
    if ((op1 & 0x5) == 0x4) {
        return (insn >> 26) & 1 ? C_SIMD_MEM : C_INT_MEM;
    }
    if ((op1 & 0x7) == 0x5) {
        return C_INT; /* data processing, register */
    }
    /* op1 == x111: scalar FP is M0S1111x (bit 30 clear, bit 28 set); the rest is Advanced SIMD */
    return ((insn >> 28) & 1) && !((insn >> 30) & 1) ? C_FP : C_SIMD;
}

/* SMSTART/SMSTOP that change PSTATE.SM: MSR SVCRSM or SVCRSMZA, #imm. Returns 1 start, 0 stop, -1 other. */
static int svcr_sm_change(uint32_t insn)
{
    if ((insn & 0xfffff0ff) != 0xd503407f) {
        return -1;
    }
    uint32_t crm = (insn >> 8) & 0xf;
    uint32_t field = crm >> 1; /* 1: SM, 2: ZA, 3: SM and ZA */
    if (field != 1 && field != 3) {
        return -1;
    }
    return crm & 1;
}

static VcpuState *state(unsigned int vcpu)
{
    return qemu_plugin_scoreboard_find(score, vcpu);
}

/* Streaming-mode part of each class as of now (an open interval included). */
static void streaming_now(const VcpuState *s, const uint64_t *counts, uint64_t *out)
{
    for (int c = 0; c < NCLASS; c++) {
        out[c] = s->streaming[c] + (s->in_streaming ? counts[c] - s->snap[c] : 0);
    }
}

static void svcr_exec(unsigned int vcpu, void *udata)
{
    const SvcrSite *site = udata;
    VcpuState *s = state(vcpu);
    uint64_t now[NCLASS];
    for (int c = 0; c < NCLASS; c++) {
        now[c] = s->counts[c] - site->suffix[c];
    }
    if (site->start && !s->in_streaming) {
        memcpy(s->snap, now, sizeof(now));
        s->in_streaming = 1;
    } else if (!site->start && s->in_streaming) {
        for (int c = 0; c < NCLASS; c++) {
            s->streaming[c] += now[c] - s->snap[c];
        }
        s->in_streaming = 0;
    }
}

static void mem_access(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    VcpuState *s = state(vcpu);
    uint64_t size = 1ull << qemu_plugin_mem_size_shift(info);
    if (qemu_plugin_mem_is_store(info)) {
        s->bytes_stored += size;
    } else {
        s->bytes_loaded += size;
    }
}

static void tb_trans(struct qemu_plugin_tb *tb, void *udata)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t per[NCLASS] = {0};
    g_autofree uint8_t *cls = g_new0(uint8_t, n);
    g_autofree uint32_t *raw = g_new0(uint32_t, n);

    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t word = 0;
        qemu_plugin_insn_data(insn, &word, sizeof(word));
        raw[i] = word;
        cls[i] = classify(word);
        per[cls[i]]++;
        if (count_bytes) {
            qemu_plugin_register_vcpu_mem_cb(insn, mem_access, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
        }
    }
    for (int c = 0; c < NCLASS; c++) {
        if (per[c]) {
            qemu_plugin_u64 entry = {score, offsetof(VcpuState, counts) + c * sizeof(uint64_t)};
            qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(tb, QEMU_PLUGIN_INLINE_ADD_U64, entry, per[c]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        int change = svcr_sm_change(raw[i]);
        if (change < 0) {
            continue;
        }
        /* Kept for the life of the process: QEMU may run this block any number of times. */
        SvcrSite *site = g_new0(SvcrSite, 1);
        site->start = change;
        for (size_t j = i + 1; j < n; j++) {
            site->suffix[cls[j]]++;
        }
        qemu_plugin_register_vcpu_insn_exec_cb(qemu_plugin_tb_get_insn(tb, i), svcr_exec, QEMU_PLUGIN_CB_NO_REGS,
                                               site);
    }
}

static void syscall_entry(unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                          uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8, void *udata)
{
    VcpuState *s = state(vcpu);
    s->ts_pending = num == NR_CLOCK_GETTIME;
    s->ts_clock = (int64_t)a1;
    s->ts_ptr = a2;
}

static void syscall_return(unsigned int vcpu, int64_t num, int64_t ret, void *udata)
{
    VcpuState *s = state(vcpu);
    if (num != NR_CLOCK_GETTIME || !s->ts_pending || ret != 0) {
        s->ts_pending = 0;
        return;
    }
    s->ts_pending = 0;
    g_autoptr(GByteArray) buf = g_byte_array_sized_new(16);
    if (!qemu_plugin_read_memory_vaddr(s->ts_ptr, buf, 16) || buf->len < 16) {
        return;
    }
    int64_t sec, nsec;
    memcpy(&sec, buf->data, 8);
    memcpy(&nsec, buf->data + 8, 8);
    Record r = {.vcpu = vcpu, .clock = (int32_t)s->ts_clock, .ns = (uint64_t)sec * 1000000000ull + (uint64_t)nsec};
    memcpy(r.counts, s->counts, sizeof(r.counts));
    streaming_now(s, s->counts, r.streaming);
    r.bytes_loaded = s->bytes_loaded;
    r.bytes_stored = s->bytes_stored;
    g_mutex_lock(&lock);
    g_array_append_val(records, r);
    g_mutex_unlock(&lock);
}

static void write_counts(FILE *f, const uint64_t *counts, const uint64_t *streaming, uint64_t ld, uint64_t st)
{
    for (int c = 0; c < NCLASS; c++) {
        fprintf(f, " %" PRIu64, counts[c]);
    }
    for (int c = 0; c < NCLASS; c++) {
        fprintf(f, " %" PRIu64, streaming[c]);
    }
    fprintf(f, " %" PRIu64 " %" PRIu64 "\n", ld, st);
}

static void at_exit(void *udata)
{
    /* Written beside the target, then renamed: a reader never sees half a file. */
    g_autofree char *tmp = g_strdup_printf("%s.partial", out_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "sme2_counts: cannot write %s\n", tmp);
        return;
    }
    fprintf(f, "# sme2-counts 1\nclasses");
    for (int c = 0; c < NCLASS; c++) {
        fprintf(f, " %s", class_names[c]);
    }
    fprintf(f, "\n");
    g_mutex_lock(&lock);
    for (guint i = 0; i < records->len; i++) {
        const Record *r = &g_array_index(records, Record, i);
        fprintf(f, "R %u %d %" PRIu64, r->vcpu, r->clock, r->ns);
        write_counts(f, r->counts, r->streaming, r->bytes_loaded, r->bytes_stored);
    }
    g_mutex_unlock(&lock);
    int n = qemu_plugin_num_vcpus();
    for (int v = 0; v < n; v++) {
        VcpuState *s = state(v);
        uint64_t streaming[NCLASS];
        streaming_now(s, s->counts, streaming);
        fprintf(f, "T %d", v);
        write_counts(f, s->counts, streaming, s->bytes_loaded, s->bytes_stored);
    }
    if (fclose(f) != 0 || rename(tmp, out_path) != 0) {
        fprintf(stderr, "sme2_counts: cannot write %s\n", out_path);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    if (strcmp(info->target_name, "aarch64") != 0) {
        fprintf(stderr, "sme2_counts: needs an aarch64 guest, not %s\n", info->target_name);
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        g_auto(GStrv) kv = g_strsplit(argv[i], "=", 2);
        if (g_strcmp0(kv[0], "out") == 0 && kv[1]) {
            out_path = g_strdup(kv[1]);
        } else if (g_strcmp0(kv[0], "bytes") == 0 && kv[1]) {
            if (!qemu_plugin_bool_parse(kv[0], kv[1], &count_bytes)) {
                fprintf(stderr, "sme2_counts: bytes=%s is not on or off\n", kv[1]);
                return -1;
            }
        } else {
            fprintf(stderr, "sme2_counts: unknown argument %s (use out=<file>, bytes=on|off)\n", argv[i]);
            return -1;
        }
    }
    if (!out_path) {
        fprintf(stderr, "sme2_counts: out=<file> is required\n");
        return -1;
    }
    score = qemu_plugin_scoreboard_new(sizeof(VcpuState));
    records = g_array_new(FALSE, TRUE, sizeof(Record));
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans, NULL);
    qemu_plugin_register_vcpu_syscall_cb(id, syscall_entry, NULL);
    qemu_plugin_register_vcpu_syscall_ret_cb(id, syscall_return, NULL);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
