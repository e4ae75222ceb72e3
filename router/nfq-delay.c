/*
 * nfq-delay: hold every packet of one NFQUEUE queue for a fixed time, then accept it.
 *
 *   nfq-delay [-r READY_FILE] [-v] [QUEUE [DELAY_MS]]
 *
 * QUEUE defaults to $NFQ_QUEUE (else 0), DELAY_MS to $DELAY_MS (else 50). Packets are released
 * (NF_ACCEPT) DELAY_MS after this program received them, strictly in arrival order. The program
 * never sleeps per packet: one ppoll() waits for either new packets or the due time of the oldest
 * held packet, on CLOCK_MONOTONIC with nanosecond timeouts and 1 us timer slack. Bursts are read
 * in one go (non-blocking recv until EAGAIN) and released with one batch verdict per wake-up (all
 * packet ids up to the last due one, which is correct because ids grow in arrival order).
 *
 * It raises its own priority to nice -10 when it may (CAP_SYS_NICE), so that a busy host adds
 * less scheduling delay to the release times; without the capability it runs at normal priority.
 *
 * Use the iptables rule with --queue-bypass so that packets pass (undelayed) when this program is
 * not running, instead of being dropped. On SIGTERM/SIGINT it releases everything it holds and
 * exits 0 (printing its statistics; SIGUSR1 prints them at any time, including its lateness:
 * release time minus due time); on any error it prints a message and exits non-zero (2 = usage, 1 = runtime).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#ifndef NFQA_CFG_F_GSO
#define NFQA_CFG_F_GSO (1 << 2)
#endif

#define RECV_BATCH 32       /* netlink messages read per wake-up before releasing due packets */
#define QUEUE_MAXLEN 65536u /* kernel-side queue length; beyond this the kernel drops */

struct held {
    uint32_t id;
    uint64_t due_ns;
};

static struct held *ring;
static size_t ring_cap, ring_head, ring_len;
static uint64_t delay_ns;
static volatile sig_atomic_t stop_signal;
static int verbose;
static unsigned long long n_packets, n_enobufs, max_backlog;
/* lateness = release time - due time, this program's own contribution to the delay */
static unsigned long long late_sum_ns, late_max_ns, n_late_1ms, n_released;
static volatile sig_atomic_t dump_stats;

static void die(const char *what) {
    fprintf(stderr, "nfq-delay: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void ring_push(uint32_t id, uint64_t due) {
    if (ring_len == ring_cap) {
        size_t ncap = ring_cap ? ring_cap * 2 : 4096;
        struct held *n = malloc(ncap * sizeof *n);
        if (!n) {
            errno = ENOMEM;
            die("growing the packet ring");
        }
        for (size_t i = 0; i < ring_len; i++)
            n[i] = ring[(ring_head + i) % ring_cap];
        free(ring);
        ring = n;
        ring_cap = ncap;
        ring_head = 0;
    }
    ring[(ring_head + ring_len) % ring_cap] = (struct held){id, due};
    ring_len++;
    if (ring_len > max_backlog)
        max_backlog = ring_len;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
    (void)qh; (void)msg; (void)data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph)
        return 0;
    ring_push(ntohl(ph->packet_id), now_ns() + delay_ns);
    n_packets++;
    return 0;
}

/* Accept every held packet whose time has come (all of them if flush). */
static void release_due(struct nfq_q_handle *qh, int flush) {
    uint64_t now = now_ns();
    uint32_t last = 0;
    size_t n = 0;
    while (ring_len && (flush || ring[ring_head].due_ns <= now)) {
        last = ring[ring_head].id;
        if (!flush && now >= ring[ring_head].due_ns) {
            uint64_t late = now - ring[ring_head].due_ns;
            late_sum_ns += late;
            if (late > late_max_ns) late_max_ns = late;
            if (late > 1000000ull) n_late_1ms++;
            n_released++;
        }
        ring_head = (ring_head + 1) % ring_cap;
        ring_len--;
        n++;
    }
    if (n == 0)
        return;
    /* batch verdict: accepts every queued id up to `last`, also one whose netlink message was
     * lost to an overrun (it would otherwise sit in the kernel queue for good) */
    int rc = nfq_set_verdict_batch(qh, last, NF_ACCEPT);
    if (rc < 0 && !flush)
        die("sending verdict");
}

static void on_signal(int sig) { stop_signal = sig; }
static void on_usr1(int sig) { (void)sig; dump_stats = 1; }

static void print_stats(const char *why) {
    fprintf(stderr, "nfq-delay: %s: %llu packets, max backlog %llu, %llu overruns; lateness mean %.3f ms, "
                    "max %.3f ms, %llu over 1 ms\n", why, n_packets, max_backlog, n_enobufs,
            n_released ? (double)late_sum_ns / n_released / 1e6 : 0.0, (double)late_max_ns / 1e6, n_late_1ms);
}

static void usage(void) {
    fprintf(stderr, "usage: nfq-delay [-r READY_FILE] [-v] [QUEUE [DELAY_MS]]\n"
                    "  QUEUE defaults to $NFQ_QUEUE or 0, DELAY_MS to $DELAY_MS or 50\n");
    exit(2);
}

static long parse_num(const char *s, const char *what, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max) {
        fprintf(stderr, "nfq-delay: bad %s '%s' (0..%ld)\n", what, s, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *ready_file = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "r:vh")) != -1) {
        switch (opt) {
        case 'r': ready_file = optarg; break;
        case 'v': verbose = 1; break;
        default: usage();
        }
    }
    const char *qs = getenv("NFQ_QUEUE"), *ds = getenv("DELAY_MS");
    if (optind < argc) qs = argv[optind++];
    if (optind < argc) ds = argv[optind++];
    if (optind < argc) usage();
    long queue = parse_num(qs && *qs ? qs : "0", "queue number", 65535);
    long delay_ms = parse_num(ds && *ds ? ds : "50", "delay (ms)", 600000);
    delay_ns = (uint64_t)delay_ms * 1000000ull;

    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* 1 us instead of the default 50 us */
    /* on a busy host, run ahead of ordinary processes when allowed (CAP_SYS_NICE); optional */
    if (setpriority(PRIO_PROCESS, 0, -10) < 0 && verbose)
        fprintf(stderr, "nfq-delay: cannot raise priority (no CAP_SYS_NICE), running at nice %d\n",
                getpriority(PRIO_PROCESS, 0));

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    /* keep the signals blocked except inside ppoll(): no lost wake-ups */
    sigset_t blocked, waitmask;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGHUP);
    sigaddset(&blocked, SIGUSR1);
    sigprocmask(SIG_BLOCK, &blocked, &waitmask);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGHUP);
    sigdelset(&waitmask, SIGUSR1);

    struct nfq_handle *h = nfq_open();
    if (!h) die("nfq_open (needs CAP_NET_ADMIN)");
    /* no-ops on kernels >= 3.8, kept for older ones; errors there are not fatal */
    nfq_unbind_pf(h, AF_INET);
    nfq_bind_pf(h, AF_INET);
    struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
    if (!qh) {
        fprintf(stderr, "nfq-delay: cannot bind NFQUEUE %ld: %s (another program on it? CAP_NET_ADMIN?)\n",
                queue, strerror(errno));
        return 1;
    }
    if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) die("nfq_set_mode");
    if (nfq_set_queue_maxlen(qh, QUEUE_MAXLEN) < 0) die("nfq_set_queue_maxlen");
    /* we never look at or change payloads: let GSO packets through whole */
    if (nfq_set_queue_flags(qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0 && verbose)
        fprintf(stderr, "nfq-delay: kernel does not take NFQA_CFG_F_GSO (ok)\n");

    int fd = nfq_fd(h);
    nfnl_rcvbufsiz(nfq_nfnlh(h), 8u << 20);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl O_NONBLOCK");

    if (ready_file) {
        FILE *f = fopen(ready_file, "w");
        if (!f) die("writing the ready file");
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
    fprintf(stderr, "nfq-delay: queue %ld, delay %ld ms, nice %d, ready\n", queue, delay_ms, getpriority(PRIO_PROCESS, 0));

    static char buf[1 << 16] __attribute__((aligned));
    while (!stop_signal) {
        struct timespec ts, *tsp = NULL;
        if (ring_len) {
            uint64_t now = now_ns(), due = ring[ring_head].due_ns;
            uint64_t wait = due > now ? due - now : 0;
            ts.tv_sec = (time_t)(wait / 1000000000ull);
            ts.tv_nsec = (long)(wait % 1000000000ull);
            tsp = &ts;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = ppoll(&pfd, 1, tsp, &waitmask);
        if (pr < 0 && errno != EINTR)
            die("ppoll");
        if (pr > 0) {
            /* at most RECV_BATCH messages, then release what is due: a long burst must not
             * hold back packets whose time has come (ppoll returns at once if more is queued) */
            for (int budget = RECV_BATCH; budget > 0; budget--) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n > 0) {
                    nfq_handle_packet(h, buf, (int)n);
                    continue;
                }
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (n < 0 && errno == EINTR) continue;
                if (n < 0 && errno == ENOBUFS) {
                    /* netlink overrun: the kernel dropped some messages (those packets are lost) */
                    if (n_enobufs++ == 0 || verbose)
                        fprintf(stderr, "nfq-delay: netlink receive buffer overrun (ENOBUFS), continuing\n");
                    continue;
                }
                if (n == 0) {
                    fprintf(stderr, "nfq-delay: netlink socket closed\n");
                    return 1;
                }
                die("recv");
            }
        }
        release_due(qh, 0);
        if (dump_stats) {
            dump_stats = 0;
            print_stats("SIGUSR1");
        }
    }

    release_due(qh, 1);
    print_stats("exiting");
    nfq_destroy_queue(qh);
    nfq_close(h);
    return 0;
}
