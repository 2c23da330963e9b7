/*
 * orac.bpf.h: what every orac program shares. build_program puts this text
 * where a program's source says #include "orac.bpf.h", after its enum
 * lost_reason (ending in LOST_REASONS) and, if it keeps histograms, HIST_SLOTS.
 *
 * Generations. Every aggregate key ends with the generation (a u32) that was
 * current when its event came. Each tick user space moves the generation on,
 * waits until no program can still be counting into the old one (an RCU
 * grace period: programs run inside RCU read-side sections), then reads and
 * deletes the old generation's entries: no update races the read, and each
 * event is in exactly one sample (probes/ebpf/probe.py, next_generation).
 */

/* Events the program could not count, by enum lost_reason. Cumulative since
 * load: user space takes differences, so nothing races a reset. */
BPF_PERCPU_ARRAY(lost, u64, LOST_REASONS);

static __always_inline void count_lost(u32 reason)
{
    u64 *n = lost.lookup(&reason);
    if (n)
        (*n)++;
}

#ifdef HIST_SLOTS
/* floor(log2(v)), 0 for v < 2, capped at the last slot: slot i counts
 * [2^i, 2^(i+1)) (probes/model/histograms.py reads them). */
static __always_inline u32 log2_slot(u64 v)
{
    u32 r = 0, shift;
    shift = (v > 0xFFFFFFFF) << 5; v >>= shift; r |= shift;
    shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
    shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
    shift = (v > 0xF) << 2; v >>= shift; r |= shift;
    shift = (v > 0x3) << 1; v >>= shift; r |= shift;
    r |= (u32)(v >> 1);
    return r < HIST_SLOTS ? r : HIST_SLOTS - 1;
}
#endif
