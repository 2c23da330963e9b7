/*
 * orac's TCP events probe: retransmits per connection (bcc's tcpretrans) and
 * connection lifecycle per process (tcpconnlat's connect latency, new
 * connections, failed connects, connections closed from ESTABLISHED),
 * aggregated in the kernel and read once per tick.
 *
 * Only the classic tracepoints tcp:tcp_retransmit_skb and
 * sock:inet_sock_set_state, with their own fields (ABI): tcpretrans and
 * tcpconnlat hook kprobes, which these kernels lack.
 *
 * Who owns a socket. A retransmit fires from a timer or in softirq, where
 * the current task is whoever was interrupted, and a passive connection
 * becomes ESTABLISHED the same way: current says nothing about the owner.
 * The one transition made in the owner's own context is the connect()
 * call's move to SYN_SENT, so that is where the owning process and its name
 * are kept, under the socket's address (skaddr), until the socket reaches
 * CLOSE. Sockets connected before the probe started and accepted ones have
 * no owner: tgid 0, which user space shows as "-".
 *
 * Transitions counted, per owning process:
 *   -> SYN_SENT                 a connect: `connects`
 *   SYN_SENT -> ESTABLISHED     connected; latency = now - the SYN_SENT time
 *   SYN_SENT -> CLOSE           the connect failed (refused, timed out, aborted)
 *   ESTABLISHED -> CLOSE        closed without the FIN handshake: a reset
 *                               received or sent (an abort), which the
 *                               tracepoint cannot tell apart
 *   SYN_RECV -> ESTABLISHED     an accepted connection (owner unknown)
 *
 * Every aggregate key carries the generation that was current when its event
 * came; user space reads and deletes finished generations (orac.bpf.h).
 *
 * Options (cflags, set by probes/sources/tcp_events.py):
 *   -DOWNER_ENTRIES=N       sockets whose owner is kept
 *   -DCONNECTION_ENTRIES=N  (connection, state, owner) rows of retransmits per tick
 *   -DPROCESS_ENTRIES=N     processes with connection events per tick
 *   -DHIST_SLOTS=N          log2 latency buckets
 */

#ifndef OWNER_ENTRIES
#define OWNER_ENTRIES 65536
#endif
#ifndef CONNECTION_ENTRIES
#define CONNECTION_ENTRIES 4096
#endif
#ifndef PROCESS_ENTRIES
#define PROCESS_ENTRIES 4096
#endif
#ifndef HIST_SLOTS
#define HIST_SLOTS 32
#endif

/* TASK_COMM_LEN, which is ABI. */
#define COMM_BYTES 16
#define AF_INET 2
#define IPPROTO_TCP 6
/* include/net/tcp_states.h, ABI */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

/* Index into `lost`; probes/sources/tcp_events.py names them in the same order. */
enum lost_reason {
    LOST_OWNER_MAP_FULL,          /* a connect's owner not kept: its events count as "-", its latency is lost */
    LOST_CONNECTION_MAP_FULL,     /* a retransmit not counted */
    LOST_PROCESS_MAP_FULL,        /* a connection event not counted */
    LOST_REASONS,
};

struct owner {
    u64 connect_ns;  /* when it went to SYN_SENT */
    u32 tgid;
    char comm[COMM_BYTES];
};

struct connection_key {
    u8 saddr[16];    /* IPv4: the first 4 bytes */
    u8 daddr[16];
    u16 family;
    u16 sport;
    u16 dport;
    u16 state;       /* the socket's state at the retransmit */
    u32 tgid;        /* the owner, 0 unknown */
    u32 gen;
};

struct connection {
    u64 retransmits;
    char comm[COMM_BYTES];
};

struct process_key {
    u32 tgid;        /* 0: owner unknown */
    u32 gen;
};

struct process {
    u64 connects;
    u64 established;
    u64 latency_total_ns;
    u64 connect_failed;
    u64 closed_from_established;
    u64 accepted;
    u32 hist[HIST_SLOTS];    /* slot i: connect latency in [2^i, 2^(i+1)) ns */
    char comm[COMM_BYTES];
};

/* LRU: a socket whose CLOSE was never seen (it was freed another way) ages
 * out instead of holding its slot for good. */
BPF_TABLE("lru_hash", u64, struct owner, owners, OWNER_ENTRIES);
/* Plain hashes with atomic adds: these events are rare next to a CPU's
 * copy per entry of a per-CPU map. */
BPF_HASH(connections, struct connection_key, struct connection, CONNECTION_ENTRIES);
BPF_HASH(processes, struct process_key, struct process, PROCESS_ENTRIES);
BPF_ARRAY(generation, u32, 1);

#include "orac.bpf.h"


static __always_inline u32 current_generation(void)
{
    u32 zero_index = 0;
    u32 *gen = generation.lookup(&zero_index);
    return gen ? *gen : 0;
}

/* The process's row of this generation, made (with the owner's name) if new. */
static __always_inline struct process *process_row(u32 tgid, char *comm)
{
    struct process_key key = {.tgid = tgid, .gen = current_generation()};
    struct process *p = processes.lookup(&key);
    if (p)
        return p;
    struct process zero = {};
    if (comm)
        __builtin_memcpy(&zero.comm, comm, sizeof(zero.comm));
    processes.insert(&key, &zero);
    p = processes.lookup(&key);
    if (!p)
        count_lost(LOST_PROCESS_MAP_FULL);
    return p;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    int old = args->oldstate, new = args->newstate;

    if (new == TCP_SYN_SENT) {
        /* connect(): the one transition in the owner's own context */
        struct owner o = {.connect_ns = bpf_ktime_get_ns(), .tgid = bpf_get_current_pid_tgid() >> 32};
        bpf_get_current_comm(&o.comm, sizeof(o.comm));
        if (owners.update(&sk, &o))
            count_lost(LOST_OWNER_MAP_FULL);
        struct process *p = process_row(o.tgid, o.comm);
        if (p)
            __sync_fetch_and_add(&p->connects, 1);
        return 0;
    }

    int connected = old == TCP_SYN_SENT && new == TCP_ESTABLISHED;
    int failed = old == TCP_SYN_SENT && new == TCP_CLOSE;
    int aborted = old == TCP_ESTABLISHED && new == TCP_CLOSE;
    int accepted = old == TCP_SYN_RECV && new == TCP_ESTABLISHED;
    if (!(connected || failed || aborted || accepted)) {
        if (new == TCP_CLOSE)
            owners.delete(&sk);
        return 0;
    }

    struct owner *o = owners.lookup(&sk);
    struct owner known = {};
    if (o)
        known = *o;
    if (new == TCP_CLOSE)
        owners.delete(&sk);
    struct process *p = process_row(known.tgid, o ? known.comm : 0);
    if (!p)
        return 0;
    if (connected) {
        __sync_fetch_and_add(&p->established, 1);
        if (o) {
            u64 latency_ns = bpf_ktime_get_ns() - known.connect_ns;
            __sync_fetch_and_add(&p->latency_total_ns, latency_ns);
            __sync_fetch_and_add(&p->hist[log2_slot(latency_ns)], 1);
        }
    } else if (failed) {
        __sync_fetch_and_add(&p->connect_failed, 1);
    } else if (aborted) {
        __sync_fetch_and_add(&p->closed_from_established, 1);
    } else {
        __sync_fetch_and_add(&p->accepted, 1);
    }
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    /* A retransmit the kernel could not send (err set: no memory, a
     * device queue full) is retried; RetransSegs counts only those sent. */
    if (args->err)
        return 0;
    u64 sk = (u64)args->skaddr;
    struct connection_key key = {
        .family = args->family,
        .sport = args->sport,
        .dport = args->dport,
        .state = args->state,
        .gen = current_generation(),
    };
    if (args->family == AF_INET) {
        __builtin_memcpy(&key.saddr, args->saddr, 4);
        __builtin_memcpy(&key.daddr, args->daddr, 4);
    } else {
        __builtin_memcpy(&key.saddr, args->saddr_v6, 16);
        __builtin_memcpy(&key.daddr, args->daddr_v6, 16);
    }
    struct owner *o = owners.lookup(&sk);
    struct connection zero = {};
    if (o) {
        key.tgid = o->tgid;
        __builtin_memcpy(&zero.comm, o->comm, sizeof(zero.comm));
    }
    struct connection *c = connections.lookup(&key);
    if (!c) {
        connections.insert(&key, &zero);
        c = connections.lookup(&key);
        if (!c) {
            count_lost(LOST_CONNECTION_MAP_FULL);
            return 0;
        }
    }
    __sync_fetch_and_add(&c->retransmits, 1);
    return 0;
}
