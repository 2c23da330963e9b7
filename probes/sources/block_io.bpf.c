/*
 * orac's block I/O probe: how long block requests take in the device (issue
 * to completion), per device and per issuing process, as bcc's biolatency
 * and biotop measure it. Aggregated in the kernel; user space reads the maps
 * once per tick, nothing is sent per request.
 *
 * Only the classic tracepoints block:block_rq_issue and block:block_rq_complete
 * are used, with their own fields (dev, sector, bytes, rwbs, comm: ABI) and BPF
 * helpers: no kprobe (biolatency's blk_account_io_* kprobes are missing where
 * kprobes are off) and no struct request field.
 *
 * A request's life:
 *   issue      the driver is handed the request: `inflight` gets, under
 *              (device, sector), the time, the issuing process and its name,
 *              the bytes and the operation.
 *   complete   the device is done: latency = now - issue time, added to the
 *              device's and the issuing process's counts and log2 histograms.
 * The process that completes a request is whoever the interrupt or the
 * completion thread ran in, not the one that issued it: that is why the
 * issuer is kept with the request. The issuer is the task that dispatched
 * the request to the driver, which for direct I/O and a queue without a
 * scheduler is the process doing the I/O, and for writeback or a queue run
 * from a kworker (kblockd) is that kernel thread, as in biotop.
 *
 * A requeued request is issued again under the same (device, sector): its
 * latency counts from the last issue, as biolatency's does. So does any
 * other request issued at the same (device, sector) while one is in flight
 * (flushes carry sector 0): the earlier one is then counted as lost
 * (LOST_ISSUE_REPLACED) when it is replaced.
 *
 * Every aggregate key carries the generation that was current when the
 * request completed. Each tick user space moves `generation` on, waits until
 * no program can still be using the old one (an RCU grace period), then reads
 * and deletes the old generation's entries, so no update races the read.
 *
 * Options (cflags, set by probes/sources/block_io.py):
 *   -DINFLIGHT_ENTRIES=N   requests in flight on the whole machine
 *   -DDEVICE_ENTRIES=N     (device, operation) pairs held per tick
 *   -DPROCESS_ENTRIES=N    (process, operation) pairs held per tick
 *   -DHIST_SLOTS=N         log2 latency buckets
 */

#ifndef INFLIGHT_ENTRIES
#define INFLIGHT_ENTRIES 16384
#endif
#ifndef DEVICE_ENTRIES
#define DEVICE_ENTRIES 1024
#endif
#ifndef PROCESS_ENTRIES
#define PROCESS_ENTRIES 4096
#endif
#ifndef HIST_SLOTS
#define HIST_SLOTS 32
#endif

#define EEXIST 17
/* TASK_COMM_LEN, which is ABI. */
#define COMM_BYTES 16

/* The operation, from the first letters of rwbs (blk_fill_rwbs): an
 * optional F (a flush before the request), then R, W, D (discard), E
 * (secure erase) or N (none: a flush alone). probes/sources/block_io.py
 * names them in this order. */
enum op {
    OP_READ,
    OP_WRITE,
    OP_DISCARD,
    OP_OTHER,
};

/* Index into `lost`; probes/sources/block_io.py names them in the same order. */
enum lost_reason {
    LOST_INFLIGHT_MAP_FULL,       /* request issued while `inflight` was full: its completion is not timed */
    LOST_COMPLETE_WITHOUT_ISSUE,  /* completion of a request issued before tracing began, or whose issue was lost */
    LOST_ISSUE_REPLACED,          /* a request in flight replaced by another issued at its (device, sector) */
    LOST_DEVICE_MAP_FULL,         /* request timed, not counted for its device */
    LOST_PROCESS_MAP_FULL,        /* request timed, not counted for its process */
    LOST_COMM_MAP_FULL,           /* process name not recorded; user space reads /proc */
    LOST_REASONS,
};

struct request_key {
    u32 dev;
    u32 pad;
    u64 sector;
};

struct request {
    u64 issue_ns;
    u32 tgid;
    u32 bytes;
    u32 op;
    char comm[COMM_BYTES];
};

struct device_key {
    u32 dev;
    u32 op;
    u32 gen;
};

struct process_key {
    u32 tgid;
    u32 op;
    u32 gen;
};

/* Counts fit u64 and buckets u32 for any tick a user would pick. */
struct stats {
    u64 requests;
    u64 bytes;
    u64 total_ns;
    u32 hist[HIST_SLOTS];    /* slot i: latency in [2^i, 2^(i+1)) ns; the last one is open-ended */
};

struct comm_key {
    u32 tgid;
    u32 gen;
};

struct comm {
    char name[COMM_BYTES];
};

/* An LRU map: a request whose completion never comes (its device was
 * removed under it) ages out instead of holding its slot for good. */
BPF_TABLE("lru_hash", struct request_key, struct request, inflight, INFLIGHT_ENTRIES);
/* Per-CPU values: completions on several CPUs add without atomics. */
BPF_PERCPU_HASH(device_stats, struct device_key, struct stats, DEVICE_ENTRIES);
BPF_PERCPU_HASH(process_stats, struct process_key, struct stats, PROCESS_ENTRIES);
BPF_HASH(comms, struct comm_key, struct comm, PROCESS_ENTRIES);
BPF_ARRAY(generation, u32, 1);

#include "orac.bpf.h"


static __always_inline u32 op_of(char *rwbs)
{
    char c = rwbs[0] == 'F' ? rwbs[1] : rwbs[0];
    if (c == 'R')
        return OP_READ;
    if (c == 'W')
        return OP_WRITE;
    if (c == 'D')
        return OP_DISCARD;
    return OP_OTHER;
}

static __always_inline void add(struct stats *st, u32 bytes, u64 latency_ns)
{
    st->requests++;
    st->bytes += bytes;
    st->total_ns += latency_ns;
    st->hist[log2_slot(latency_ns)]++;
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    struct request_key key = {.dev = args->dev, .sector = args->sector};
    struct request r = {
        .issue_ns = bpf_ktime_get_ns(),
        .tgid = bpf_get_current_pid_tgid() >> 32,
        .bytes = args->bytes,
    };
    char rwbs[2];
    bpf_probe_read_kernel(&rwbs, sizeof(rwbs), args->rwbs);
    r.op = op_of(rwbs);
    bpf_probe_read_kernel(&r.comm, sizeof(r.comm), args->comm);
    if (inflight.lookup(&key))
        count_lost(LOST_ISSUE_REPLACED);
    if (inflight.update(&key, &r))
        count_lost(LOST_INFLIGHT_MAP_FULL);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct request_key key = {.dev = args->dev, .sector = args->sector};
    struct request *r = inflight.lookup(&key);
    if (!r) {
        count_lost(LOST_COMPLETE_WITHOUT_ISSUE);
        return 0;
    }
    u64 latency_ns = bpf_ktime_get_ns() - r->issue_ns;
    struct request done = *r;
    inflight.delete(&key);

    u32 zero_index = 0;
    u32 *gen = generation.lookup(&zero_index);
    if (!gen)
        return 0;
    struct stats zero = {};

    struct device_key dk = {.dev = key.dev, .op = done.op, .gen = *gen};
    struct stats *st = device_stats.lookup_or_try_init(&dk, &zero);
    if (st)
        add(st, done.bytes, latency_ns);
    else
        count_lost(LOST_DEVICE_MAP_FULL);

    struct process_key pk = {.tgid = done.tgid, .op = done.op, .gen = *gen};
    st = process_stats.lookup(&pk);
    if (!st) {
        /* First request of this (process, operation) in this generation. */
        process_stats.insert(&pk, &zero);
        st = process_stats.lookup(&pk);
        if (!st) {
            count_lost(LOST_PROCESS_MAP_FULL);
            return 0;
        }
        struct comm_key ck = {.tgid = done.tgid, .gen = *gen};
        struct comm c;
        __builtin_memcpy(&c.name, done.comm, sizeof(c.name));
        int err = comms.insert(&ck, &c);
        if (err && err != -EEXIST)
            count_lost(LOST_COMM_MAP_FULL);
    }
    add(st, done.bytes, latency_ns);
    return 0;
}
