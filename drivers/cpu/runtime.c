/* The cpu device's runtime: packet rings consumed by executor threads, a worker pool that spreads a
 * launch's blocks over the cores, 64-bit signals with futex wake-ups, and a fault guard around
 * kernel calls. Built once per machine into a shared object (drivers/cpu/native.py) and called
 * through cffi, so the hot path (submit, execute, signal, wait) is C. Linux only (futex, memfd).
 *
 * Ordering: the host writes packets, then publishes them with a release store of wptr; the executor
 * acquires wptr, runs packets in order and publishes progress with a release store of rptr. Signal
 * stores are seq_cst, followed by a bump of the device's wake sequence so sleeping waiters re-check.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kos_kernel.h"
#include "runtime.h"

typedef void (*kos_kernel_fn)(const kos_launch *, uint64_t, uint64_t, const void *);

/* ---- time and futex ---------------------------------------------------------------------- */
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t seen, int64_t timeout_ns) {
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, seen, tp, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* One step of a spin-wait. Yielding (rather than a pause instruction) matters on small machines:
 * when the thread we wait for shares our core, it runs now instead of after our timeslice. */
static inline void spin_step(void) { sched_yield(); }

/* ---- fault guard ------------------------------------------------------------------------- */
/* A kernel that faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE) jumps back to the thread that called it,
 * which marks its queue dead. Faults outside a kernel call go to the handler installed before ours
 * (Python's faulthandler, or the default action) by restoring it and returning: the faulting
 * instruction runs again and faults under the old handler. */
static const int guarded_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
#define N_GUARDED (sizeof guarded_signals / sizeof guarded_signals[0])
static struct sigaction previous_actions[N_GUARDED];
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

typedef struct fault_ctx {
    sigjmp_buf jump;
    volatile int armed;
    volatile int signo;
    volatile uint64_t addr;
} fault_ctx;
/* initial-exec: the handler must not make glibc allocate this thread's TLS block */
static __thread fault_ctx *thread_fault_ctx __attribute__((tls_model("initial-exec")));

static void on_fault(int signo, siginfo_t *info, void *uctx) {
    (void)uctx;
    fault_ctx *ctx = thread_fault_ctx;
    if (ctx && ctx->armed) {
        ctx->armed = 0;
        ctx->signo = signo;
        ctx->addr = (uint64_t)(uintptr_t)info->si_addr;
        siglongjmp(ctx->jump, 1);
    }
    for (size_t i = 0; i < N_GUARDED; i++)
        if (guarded_signals[i] == signo) sigaction(signo, &previous_actions[i], NULL);
}

static void install_guard(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_GUARDED; i++) sigaction(guarded_signals[i], &sa, &previous_actions[i]);
}

/* Threads that run kernels get an alternate signal stack, so a kernel that overflows its stack
 * still reaches the handler. */
#define ALT_STACK_B (64 * 1024)

static void *alt_stack_enter(void) {
    stack_t ss = {.ss_sp = malloc(ALT_STACK_B), .ss_size = ALT_STACK_B, .ss_flags = 0};
    if (ss.ss_sp && sigaltstack(&ss, NULL) != 0) {
        free(ss.ss_sp);
        return NULL;
    }
    return ss.ss_sp;
}

static void alt_stack_leave(void *sp) {
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(sp);
}

/* Run kernel blocks [begin, end); returns 0, or the signal number of a fault (details in *fault). */
static int run_guarded(kos_kernel_fn fn, const kos_launch *L, uint64_t begin, uint64_t end, const void *args,
                       uint64_t *fault_addr) {
    fault_ctx ctx;
    ctx.armed = 0;
    thread_fault_ctx = &ctx;
    if (sigsetjmp(ctx.jump, 1)) {
        thread_fault_ctx = NULL;
        *fault_addr = ctx.addr;
        return ctx.signo;
    }
    ctx.armed = 1;
    fn(L, begin, end, args);
    ctx.armed = 0;
    thread_fault_ctx = NULL;
    return 0;
}

/* ---- device: wake sequence, worker pool ---------------------------------------------------- */
typedef struct launch_job {
    kos_kernel_fn fn;
    const kos_launch *L;
    const void *args;
    uint64_t nblocks, chunk;
    _Atomic uint64_t next;         /* next block to claim */
    _Atomic int fault_signo;
    _Atomic uint64_t fault_addr;
} launch_job;

enum { WORKER_IDLE = 0, WORKER_RUN = 1, WORKER_STOP = 2 };

typedef struct worker {
    pthread_t thread;
    struct kos_dev *dev;
    _Atomic uint32_t state;        /* IDLE -> RUN (device) -> IDLE (worker) */
    launch_job *job;
} worker;

/* A signal write that a dead queue skipped: waits for at most `value` on `addr` cannot be satisfied
 * by that queue any more (see "orphans" below). */
typedef struct orphan {
    uint64_t addr, value;
    kos_queue *owner;
} orphan;

struct kos_dev {
    _Atomic uint32_t wake_seq;     /* futex word bumped after every signal write */
    _Atomic uint32_t waiters;      /* threads sleeping on wake_seq */
    _Atomic uint32_t dead_queues;  /* queues stopped by a fault, not yet torn down */
    pthread_mutex_t orphan_lock;   /* guards the orphan table */
    orphan *orphans;               /* skipped signal writes of dead queues, one entry per (owner, addr) */
    size_t n_orphans, orphan_cap;
    kos_queue *orphans_lost;       /* a dead queue whose table entry could not be allocated: every wait depends on it */
    uint64_t spin_ns;              /* how long waits spin before sleeping */
    _Atomic uint32_t pool_seq;     /* futex word of the idle workers: bumped to send them spinning again */
    _Atomic uint32_t pool_sleepers;/* workers asleep (or about to be) on pool_seq */
    pthread_mutex_t pool_lock;     /* one launch uses the pool at a time; others run inline */
    int nworkers;
    worker *workers;
};

static void bump_wake(kos_dev *d) {
    atomic_fetch_add(&d->wake_seq, 1);
    if (atomic_load(&d->waiters)) futex_wake_all(&d->wake_seq);
}

static void claim_and_run(launch_job *job) {
    for (;;) {
        uint64_t b = atomic_fetch_add(&job->next, job->chunk);
        if (b >= job->nblocks) return;
        uint64_t e = b + job->chunk < job->nblocks ? b + job->chunk : job->nblocks;
        uint64_t addr = 0;
        int signo = run_guarded(job->fn, job->L, b, e, job->args, &addr);
        if (signo) {
            int expected = 0;
            if (atomic_compare_exchange_strong(&job->fault_signo, &expected, signo)) atomic_store(&job->fault_addr, addr);
            atomic_store(&job->next, job->nblocks); /* stop handing out blocks */
            return;
        }
    }
}

/* Idle workers spin for spin_ns, then sleep on the pool's one futex word; any bump of it (a launch,
 * or pool_wake ahead of one) sends them all spinning again, with one system call for the pool. */
static void *worker_main(void *arg) {
    worker *w = arg;
    kos_dev *d = w->dev;
    void *alt_stack = alt_stack_enter();
    for (;;) {
        uint64_t spin_until = now_ns() + d->spin_ns;
        uint32_t s;
        while ((s = atomic_load(&w->state)) == WORKER_IDLE) {
            if (now_ns() < spin_until) { spin_step(); continue; }
            uint32_t seq = atomic_load(&d->pool_seq);
            atomic_fetch_add(&d->pool_sleepers, 1);
            if (atomic_load(&w->state) == WORKER_IDLE) futex_wait(&d->pool_seq, seq, -1);
            atomic_fetch_sub(&d->pool_sleepers, 1);
            spin_until = now_ns() + d->spin_ns;
        }
        if (s == WORKER_STOP) break;
        claim_and_run(w->job);
        atomic_store(&w->state, WORKER_IDLE);
    }
    alt_stack_leave(alt_stack);
    return NULL;
}

/* Wake every sleeping worker (after their states are set, or to have them spinning for a launch
 * that is coming): one futex call, so the last worker does not wait behind one call per worker. */
static void pool_wake(kos_dev *d) {
    atomic_fetch_add(&d->pool_seq, 1);
    if (atomic_load(&d->pool_sleepers)) futex_wake_all(&d->pool_seq);
}

kos_dev *kos_dev_create(int nworkers, uint64_t spin_ns) {
    pthread_once(&guard_once, install_guard);
    kos_dev *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->spin_ns = spin_ns;
    pthread_mutex_init(&d->pool_lock, NULL);
    pthread_mutex_init(&d->orphan_lock, NULL);
    d->workers = calloc(nworkers > 0 ? nworkers : 1, sizeof(worker));
    if (!d->workers) {
        pthread_mutex_destroy(&d->pool_lock);
        pthread_mutex_destroy(&d->orphan_lock);
        free(d);
        return NULL;
    }
    for (int i = 0; i < nworkers; i++) {
        worker *w = &d->workers[i];
        w->dev = d;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) break;
        d->nworkers = i + 1;
    }
    return d;
}

void kos_dev_destroy(kos_dev *d) {
    for (int i = 0; i < d->nworkers; i++) atomic_store(&d->workers[i].state, WORKER_STOP);
    pool_wake(d);
    for (int i = 0; i < d->nworkers; i++) pthread_join(d->workers[i].thread, NULL);
    pthread_mutex_destroy(&d->pool_lock);
    pthread_mutex_destroy(&d->orphan_lock);
    free(d->orphans);
    free(d->workers);
    free(d);
}

#define CHUNKS_PER_THREAD 16

/* Run a launch over the pool (the calling executor takes part). Returns 0 or a fault signal. */
static int run_launch(kos_dev *d, const kos_packet *p, uint64_t *fault_addr) {
    const kos_launch *L = (const kos_launch *)&p->u.launch;
    kos_kernel_fn fn = (kos_kernel_fn)(uintptr_t)p->u.launch.fn;
    const void *args = (const void *)(uintptr_t)p->u.launch.args;
    uint64_t nblocks = (uint64_t)L->grid[0] * L->grid[1] * L->grid[2];
    if (nblocks < 2 || d->nworkers == 0 || pthread_mutex_trylock(&d->pool_lock) != 0)
        return run_guarded(fn, L, 0, nblocks, args, fault_addr);

    launch_job job = {.fn = fn, .L = L, .args = args, .nblocks = nblocks};
    int nthreads = d->nworkers + 1;
    /* Threads claim chunks of blocks: at least CHUNKS_PER_THREAD chunks per thread (fewer atomic
     * claims for launches of many tiny blocks), the chunk size rounded down, so a launch of a few
     * blocks per thread (a convolution's, planned as whole rounds over the threads) goes one block at
     * a time: rounding up would pair them and add rounds (112 blocks on 16 threads in chunks of 2
     * take 4 rounds of 2 blocks, not 7 of 1). */
    job.chunk = nblocks / ((uint64_t)nthreads * CHUNKS_PER_THREAD);
    if (job.chunk == 0) job.chunk = 1;
    atomic_init(&job.next, 0);
    atomic_init(&job.fault_signo, 0);
    atomic_init(&job.fault_addr, 0);
    int helpers = (int)((nblocks + job.chunk - 1) / job.chunk) - 1; /* workers that can get a chunk */
    if (helpers > d->nworkers) helpers = d->nworkers;
    for (int i = 0; i < helpers; i++) {
        d->workers[i].job = &job;
        atomic_store(&d->workers[i].state, WORKER_RUN);
    }
    pool_wake(d);
    claim_and_run(&job);
    for (int i = 0; i < helpers; i++)
        while (atomic_load(&d->workers[i].state) != WORKER_IDLE) spin_step();
    pthread_mutex_unlock(&d->pool_lock);
    *fault_addr = atomic_load(&job.fault_addr);
    return atomic_load(&job.fault_signo);
}

/* ---- signals ------------------------------------------------------------------------------- */
void kos_signal_set(kos_dev *d, uint64_t addr, uint64_t value) {
    atomic_store((_Atomic uint64_t *)(uintptr_t)addr, value);
    bump_wake(d);
}

uint64_t kos_signal_read(uint64_t addr) { return atomic_load((_Atomic uint64_t *)(uintptr_t)addr); }

/* ---- orphans: what a dead queue will never write ---------------------------------------------
 * A dead queue's executor skips the rest of its work; every SIGNAL or TIMESTAMP it skips is recorded
 * here (the highest value per address) before waiters are woken. A wait whose value a skipped write
 * would have reached depends on the dead queue and fails; a wait on a signal that a healthy queue or
 * the host sets is not affected. Entries go when the dead queue is torn down (replaced). */
static void record_orphan(kos_dev *d, kos_queue *owner, uint64_t addr, uint64_t value) {
    pthread_mutex_lock(&d->orphan_lock);
    size_t i = 0;
    while (i < d->n_orphans && !(d->orphans[i].owner == owner && d->orphans[i].addr == addr)) i++;
    if (i < d->n_orphans) {
        if (value > d->orphans[i].value) d->orphans[i].value = value;
    } else {
        if (d->n_orphans == d->orphan_cap) {
            size_t cap = d->orphan_cap ? 2 * d->orphan_cap : 16;
            orphan *grown = realloc(d->orphans, cap * sizeof *grown);
            if (grown) {
                d->orphans = grown;
                d->orphan_cap = cap;
            }
        }
        if (d->n_orphans < d->orphan_cap)
            d->orphans[d->n_orphans++] = (orphan){.addr = addr, .value = value, .owner = owner};
        else
            d->orphans_lost = owner;
    }
    pthread_mutex_unlock(&d->orphan_lock);
}

/* The dead queue that would have brought *addr to value, or NULL. */
static kos_queue *orphaned_by(kos_dev *d, uint64_t addr, uint64_t value) {
    pthread_mutex_lock(&d->orphan_lock);
    kos_queue *owner = d->orphans_lost;
    for (size_t i = 0; !owner && i < d->n_orphans; i++)
        if (d->orphans[i].addr == addr && d->orphans[i].value >= value) owner = d->orphans[i].owner;
    pthread_mutex_unlock(&d->orphan_lock);
    return owner;
}

static void drop_orphans(kos_dev *d, kos_queue *owner) {
    pthread_mutex_lock(&d->orphan_lock);
    size_t kept = 0;
    for (size_t i = 0; i < d->n_orphans; i++)
        if (d->orphans[i].owner != owner) d->orphans[kept++] = d->orphans[i];
    d->n_orphans = kept;
    if (d->orphans_lost == owner) d->orphans_lost = NULL;
    pthread_mutex_unlock(&d->orphan_lock);
}

/* Wait until *addr >= value. stop (may be NULL) aborts the wait when it becomes non-zero.
 * Returns KOS_OK, KOS_TIMEOUT, KOS_STOPPED, or KOS_FAULT when the value was not reached and a dead
 * queue skipped a write that would have reached it (that queue in *dead_owner). */
static int wait_value(kos_dev *d, uint64_t addr, uint64_t value, int64_t timeout_ns, _Atomic int *stop,
                      kos_queue **dead_owner) {
    _Atomic uint64_t *word = (_Atomic uint64_t *)(uintptr_t)addr;
    uint64_t start = now_ns();
    uint64_t spin_ns = timeout_ns >= 0 && (uint64_t)timeout_ns < d->spin_ns ? (uint64_t)timeout_ns : d->spin_ns;
    while (now_ns() - start < spin_ns) {
        if (atomic_load(word) >= value) return KOS_OK;
        spin_step();
    }
    for (;;) {
        uint32_t seq = atomic_load(&d->wake_seq);
        atomic_fetch_add(&d->waiters, 1);
        int reached = atomic_load(word) >= value;
        if (!reached && atomic_load(&d->dead_queues) && (*dead_owner = orphaned_by(d, addr, value))) {
            atomic_fetch_sub(&d->waiters, 1);
            return KOS_FAULT;
        }
        if (!reached && stop && atomic_load(stop)) {
            atomic_fetch_sub(&d->waiters, 1);
            return KOS_STOPPED;
        }
        int64_t left = -1;
        if (!reached && timeout_ns >= 0) {
            left = timeout_ns - (int64_t)(now_ns() - start);
            if (left <= 0) {
                atomic_fetch_sub(&d->waiters, 1);
                return KOS_TIMEOUT;
            }
        }
        if (!reached) futex_wait(&d->wake_seq, seq, left);
        atomic_fetch_sub(&d->waiters, 1);
        if (reached) return KOS_OK;
    }
}

int kos_signal_wait(kos_dev *d, uint64_t addr, uint64_t value, int64_t timeout_ns) {
    kos_queue *dead_owner;
    return wait_value(d, addr, value, timeout_ns, NULL, &dead_owner);
}

/* ---- queues: a ring of packets and its executor thread ------------------------------------- */
struct kos_queue {
    kos_dev *dev;
    kos_packet *ring;
    uint64_t capacity;             /* packets, a power of two */
    _Atomic uint64_t wptr;         /* packets published by the host */
    _Atomic uint64_t rptr;         /* packets completed by the executor */
    _Atomic uint32_t doorbell;     /* futex word bumped by every submit */
    _Atomic uint32_t sleeping;     /* executor is (about to be) asleep on the doorbell */
    pthread_mutex_t push_lock;     /* host threads submitting to one queue take turns */
    _Atomic int stop;
    _Atomic int dead;              /* a kernel faulted: packets after it are skipped */
    int fault_signo;               /* 0 when it died waiting on a signal a dead queue would have set */
    uint64_t fault_addr, fault_fn; /* faulting address and kernel, or that signal and the dead queue */
    uint64_t vals[KOS_MAX_VARS];   /* Var values bound by the last SETVALS packet */
    pthread_t thread;
};

static uint64_t packet_value(const kos_queue *q, const kos_packet *p) {
    return (p->flags & KOS_FLAG_VAR) ? q->vals[p->slot] + p->u.sig.value : p->u.sig.value;
}

static void die(kos_queue *q, int signo, uint64_t addr, uint64_t fn) {
    q->fault_signo = signo;
    q->fault_addr = addr;
    q->fault_fn = fn;
    atomic_store(&q->dead, 1);
    atomic_fetch_add(&q->dev->dead_queues, 1);
}

/* A packet of a dead queue: record the signal writes it would have made (SETVALS still bind Vars,
 * so Var-valued writes are recorded with their values). */
static void skip(kos_queue *q, const kos_packet *p) {
    switch (p->op) {
    case KOS_OP_SIGNAL:
        record_orphan(q->dev, q, p->u.sig.addr, packet_value(q, p));
        break;
    case KOS_OP_TIMESTAMP:
        record_orphan(q->dev, q, p->u.sig.addr, UINT64_MAX);
        break;
    case KOS_OP_SETVALS:
        for (uint32_t i = 0; i < p->u.setvals.count && p->u.setvals.base + i < KOS_MAX_VARS; i++)
            q->vals[p->u.setvals.base + i] = p->u.setvals.vals[i];
        break;
    case KOS_OP_INDIRECT: {
        const kos_packet *sub = (const kos_packet *)(uintptr_t)p->u.indirect.packets;
        for (uint64_t i = 0; i < p->u.indirect.count; i++)
            if (sub[i].op != KOS_OP_INDIRECT) skip(q, &sub[i]);
        break;
    }
    default:
        break;
    }
}

/* Execute one packet; returns KOS_OK, or KOS_STOPPED when the queue is shutting down. */
static int execute(kos_queue *q, const kos_packet *p) {
    kos_dev *d = q->dev;
    switch (p->op) {
    case KOS_OP_LAUNCH: {
        uint64_t addr = 0;
        int signo = run_launch(d, p, &addr);
        if (signo) die(q, signo, addr, p->u.launch.fn);
        return KOS_OK;
    }
    case KOS_OP_COPY:
        memmove((void *)(uintptr_t)p->u.copy.dst, (const void *)(uintptr_t)p->u.copy.src, p->u.copy.size_B);
        return KOS_OK;
    case KOS_OP_SIGNAL:
        kos_signal_set(d, p->u.sig.addr, packet_value(q, p));
        return KOS_OK;
    case KOS_OP_TIMESTAMP:
        kos_signal_set(d, p->u.sig.addr, now_ns());
        return KOS_OK;
    case KOS_OP_WAIT: {
        /* Waiting for a write a dead queue skipped would block forever: this queue dies too, so
         * waits on what it would have signalled fail instead of timing out. */
        kos_queue *dead_owner = NULL;
        int rc = wait_value(d, p->u.sig.addr, packet_value(q, p), -1, &q->stop, &dead_owner);
        if (rc == KOS_FAULT) die(q, 0, p->u.sig.addr, (uint64_t)(uintptr_t)dead_owner);
        return rc == KOS_STOPPED ? KOS_STOPPED : KOS_OK;
    }
    case KOS_OP_SETVALS:
        for (uint32_t i = 0; i < p->u.setvals.count && p->u.setvals.base + i < KOS_MAX_VARS; i++)
            q->vals[p->u.setvals.base + i] = p->u.setvals.vals[i];
        return KOS_OK;
    case KOS_OP_INDIRECT: {
        const kos_packet *sub = (const kos_packet *)(uintptr_t)p->u.indirect.packets;
        for (uint64_t i = 0; i < p->u.indirect.count; i++) {
            if (sub[i].op == KOS_OP_INDIRECT) continue;
            if (atomic_load(&q->dead)) skip(q, &sub[i]);
            else if (execute(q, &sub[i]) == KOS_STOPPED) return KOS_STOPPED;
        }
        return KOS_OK;
    }
    default:
        return KOS_OK;
    }
}

static void run_ring(kos_queue *q) {
    uint64_t r = 0;
    while (!atomic_load(&q->stop)) {
        uint64_t spin_until = now_ns() + q->dev->spin_ns;
        while (atomic_load_explicit(&q->wptr, memory_order_acquire) == r) {
            if (atomic_load(&q->stop)) return;
            if (now_ns() < spin_until) { spin_step(); continue; }
            uint32_t bell = atomic_load(&q->doorbell);
            atomic_store(&q->sleeping, 1);
            if (atomic_load(&q->wptr) == r && !atomic_load(&q->stop)) futex_wait(&q->doorbell, bell, -1);
            atomic_store(&q->sleeping, 0);
            pool_wake(q->dev); /* work is coming after a quiet spell: the workers wake beside this thread */
        }
        uint64_t w = atomic_load_explicit(&q->wptr, memory_order_acquire);
        for (; r != w; r++) {
            const kos_packet *p = &q->ring[r & (q->capacity - 1)];
            if (atomic_load(&q->dead)) skip(q, p);
            else if (execute(q, p) == KOS_STOPPED) return;
            atomic_store_explicit(&q->rptr, r + 1, memory_order_release);
        }
        if (atomic_load(&q->dead)) bump_wake(q->dev); /* its skipped writes are recorded: waiters re-check */
    }
}

static void *executor_main(void *arg) {
    void *alt_stack = alt_stack_enter();
    run_ring(arg);
    alt_stack_leave(alt_stack);
    return NULL;
}

kos_queue *kos_queue_create(kos_dev *d, uint64_t capacity) {
    kos_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->dev = d;
    q->capacity = capacity;
    q->ring = aligned_alloc(64, capacity * sizeof(kos_packet));
    pthread_mutex_init(&q->push_lock, NULL);
    if (!q->ring || pthread_create(&q->thread, NULL, executor_main, q) != 0) {
        free(q->ring);
        free(q);
        return NULL;
    }
    return q;
}

void kos_queue_destroy(kos_queue *q) {
    atomic_store(&q->stop, 1);
    atomic_fetch_add(&q->doorbell, 1);
    futex_wake_all(&q->doorbell);
    bump_wake(q->dev); /* an executor blocked in a WAIT packet */
    pthread_join(q->thread, NULL);
    if (atomic_load(&q->dead)) {
        drop_orphans(q->dev, q);
        atomic_fetch_sub(&q->dev->dead_queues, 1);
    }
    pthread_mutex_destroy(&q->push_lock);
    free(q->ring);
    free(q);
}

/* Append packets to the ring and ring the doorbell. A full ring is rare (it holds thousands of
 * submits), so waiting for space polls every 20 us, up to timeout_ns. */
static int push(kos_queue *q, const kos_packet *packets, uint64_t n, int64_t timeout_ns) {
    uint64_t w = atomic_load(&q->wptr), start = now_ns();
    while (w + n - atomic_load_explicit(&q->rptr, memory_order_acquire) > q->capacity) {
        if (atomic_load(&q->dead)) return KOS_FAULT;
        if ((int64_t)(now_ns() - start) > timeout_ns) return KOS_TIMEOUT;
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
    for (uint64_t i = 0; i < n; i++) q->ring[(w + i) & (q->capacity - 1)] = packets[i];
    atomic_store_explicit(&q->wptr, w + n, memory_order_release);
    atomic_fetch_add(&q->doorbell, 1);
    if (atomic_load(&q->sleeping)) futex_wake_all(&q->doorbell);
    return KOS_OK;
}

int64_t kos_queue_submit(kos_queue *q, uint64_t packets, uint64_t count, const uint64_t *vals, uint32_t nvals,
                         int64_t timeout_ns) {
    if (atomic_load(&q->dead)) return -KOS_FAULT;
    if (nvals > KOS_MAX_VARS) return -KOS_INVALID;
    kos_packet batch[KOS_MAX_VARS / KOS_SETVALS_PER_PACKET + 2];
    uint64_t n = 0;
    for (uint32_t base = 0; base < nvals; base += KOS_SETVALS_PER_PACKET, n++) {
        memset(&batch[n], 0, sizeof batch[n]);
        batch[n].op = KOS_OP_SETVALS;
        batch[n].u.setvals.base = base;
        batch[n].u.setvals.count = nvals - base < KOS_SETVALS_PER_PACKET ? nvals - base : KOS_SETVALS_PER_PACKET;
        memcpy(batch[n].u.setvals.vals, vals + base, batch[n].u.setvals.count * sizeof(uint64_t));
    }
    memset(&batch[n], 0, sizeof batch[n]);
    batch[n].op = KOS_OP_INDIRECT;
    batch[n].u.indirect.packets = packets;
    batch[n].u.indirect.count = count;
    pthread_mutex_lock(&q->push_lock);
    int rc = push(q, batch, n + 1, timeout_ns);
    int64_t wptr = (int64_t)atomic_load(&q->wptr);
    pthread_mutex_unlock(&q->push_lock);
    return rc == KOS_OK ? wptr : -rc;
}

uint64_t kos_queue_rptr(kos_queue *q) { return atomic_load(&q->rptr); }

void kos_queue_state(kos_queue *q, uint64_t *out) {
    out[0] = atomic_load(&q->wptr);
    out[1] = atomic_load(&q->rptr);
    out[2] = q->capacity;
    out[3] = atomic_load(&q->dead);
    out[4] = (uint64_t)q->fault_signo;
    out[5] = q->fault_addr;
    out[6] = q->fault_fn;
    out[7] = atomic_load(&q->sleeping);
}

/* ---- memory and code --------------------------------------------------------------------- */
uint64_t kos_map(uint64_t size_B) {
    void *p = mmap(NULL, size_B, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? 0 : (uint64_t)(uintptr_t)p;
}

int kos_unmap(uint64_t addr, uint64_t size_B) { return munmap((void *)(uintptr_t)addr, size_B); }

/* dlopen a shared object; on failure returns NULL and copies dlerror() into err. */
void *kos_dlopen(const char *path, char *err, int err_len) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(err, (size_t)err_len, "%s", dlerror());
    return h;
}

uint64_t kos_dlsym(void *handle, const char *name) { return (uint64_t)(uintptr_t)dlsym(handle, name); }

int kos_dlclose(void *handle) { return dlclose(handle); }

uint64_t kos_now_ns(void) { return now_ns(); }
