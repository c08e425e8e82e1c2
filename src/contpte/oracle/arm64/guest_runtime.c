/*
 * contpte arm64 oracle: the guest side of one scenario.
 *
 * The Python side (contpte/oracle/arm64/guest.py) writes a C file that
 * defines the tables below and then includes this file.  The program runs
 * as a child of /init inside the qemu guest:
 *
 *   - it switches every mTHP size to "never", prefaults its own stack and
 *     marks all its own mappings MADV_NOHUGEPAGE, then applies the
 *     scenario's THP policy;
 *   - it (the controller) never runs a scenario step itself: every scenario
 *     process is a worker, forked by the controller (spawn) or by another
 *     worker (fork), that waits on a futex in a shared page for its next
 *     step;
 *   - around each step the controller writes "@@B <i>" / "@@E <i>" to
 *     trace_marker, so the host can split the kprobe trace per step;
 *   - it prints one "@@S" result line per step and then the trace.
 *
 * Addresses are the model's: mappings are made with MAP_FIXED_NOREPLACE at
 * the address the model chose, so every alignment (and so every mTHP
 * decision) is the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif


enum op { OP_NOP, OP_SPAWN, OP_FILE, OP_FORK, OP_EXIT, OP_MMAP, OP_WRITE, OP_READ,
	  OP_MPROTECT, OP_MADVISE, OP_MUNMAP, OP_UFFD_WP, OP_MREMAP };

struct step {
	int line;
	int op;
	int proc;                /* the worker that runs it (-1: the controller) */
	int child;               /* spawn, fork: the new worker's index */
	unsigned long addr, len; /* model addresses */
	uint64_t value;          /* write: the value; mremap: the new length */
	int prot, flags, advice; /* mremap: flags are MREMAP_* */
	int file;                /* index into files[], -1: none */
	unsigned long offset;    /* mremap: the new address (MREMAP_FIXED) */
	int expect_fail;         /* mmap, mremap: the model refused it */
};

struct filedesc {
	const char *path;
	unsigned long size;
	uint64_t id;             /* the model's file id: page i holds id << 40 | i */
};

/* @TABLES@ */

/* PAGE (the kernel's page size) and PMD_KB (its PMD size in kB) come with the tables. */
#define MAXVALS (1UL << 20) /* values one read step may return */
#define THP "/sys/kernel/mm/transparent_hugepage/"
#define TRACING "/sys/kernel/tracing/"

struct ctl {
	int seq[MAXPROCS];       /* futex: bumped by the controller to hand a worker a step */
	int pid[MAXPROCS];
	int done;                /* futex: bumped by a worker when its step is over */
	int step;
	long err;                /* 0, an errno, -SEGV_MAPERR / -SEGV_ACCERR, ERR_UFFD_WP,
				    or ERR_SIGBUS - the SIGBUS si_code */
	unsigned long nvals;
	uint64_t vals[MAXVALS];
};

#define ERR_UFFD_WP (-100L)  /* a write hit a uffd-wp page: SIGBUS (UFFD_FEATURE_SIGBUS) */
#define ERR_SIGBUS (-200L)   /* any other SIGBUS, minus its si_code */

static struct ctl *ctl;
static int me = -1;
static sigjmp_buf segv_jmp;
static volatile int segv_code, fault_sig;
static volatile unsigned long fault_addr;

/* This worker's userfaultfd and the ranges it registered (model addresses). */
#define MAXUFFD 64
static int uffd = -1;
static unsigned long uffd_lo[MAXUFFD], uffd_hi[MAXUFFD];
static int nuffd;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("@@FATAL ");
	vprintf(fmt, ap);
	printf(" (errno %d)\n", errno);
	va_end(ap);
	fflush(stdout);
	_exit(1);
}

static long futex(int *uaddr, int op, int val)
{
	return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

static void wait_change(int *word, int old)
{
	while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == old)
		futex(word, FUTEX_WAIT, old);
}

static void bump(int *word)
{
	__atomic_add_fetch(word, 1, __ATOMIC_RELEASE);
	futex(word, FUTEX_WAKE, 1 << 30);
}

static int write_file(const char *path, const char *text, int must)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0) {
		if (must)
			die("open %s", path);
		return -1;
	}
	n = write(fd, text, strlen(text));
	close(fd);
	if (n < 0 && must)
		die("write %s to %s", text, path);
	return n < 0 ? -1 : 0;
}

static int marker_fd = -1;

static void marker(const char *what, int i)
{
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "@@%s %d\n", what, i);

	if (write(marker_fd, buf, n) != n)
		die("trace_marker");
}

/* ---- THP policy ------------------------------------------------------- */
/* Every mTHP size of 4K and 16K pages (a size the kernel lacks is skipped);
 * the PMD size inherits, as after boot. */
static const int all_sizes_kb[] = { 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768 };

static void thp_policy(const char *top, int reset)
{
	char path[128];
	unsigned i, j;

	for (i = 0; i < sizeof(all_sizes_kb) / sizeof(all_sizes_kb[0]); i++) {
		const char *v = all_sizes_kb[i] == PMD_KB ? "inherit" : "never";

		for (j = 0; !reset && j < NSIZES; j++)
			if (mthp_kb[j] == all_sizes_kb[i])
				v = mthp_val[j];
		snprintf(path, sizeof(path), THP "hugepages-%dkB/enabled", all_sizes_kb[i]);
		if (write_file(path, v, 0) < 0 && access(path, F_OK) == 0)
			die("cannot set %s to %s", path, v);
	}
	write_file(THP "enabled", top, 1);
}

/* Keep the program's own memory out of large folios: prefault the stack
 * and mark every mapping it has MADV_NOHUGEPAGE. */
static void __attribute__((noinline)) prefault_stack(void)
{
	volatile char buf[256 * 1024];
	size_t i;

	for (i = 0; i < sizeof(buf); i += PAGE)
		buf[i] = 0;
}

static void no_huge_self(void)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		die("/proc/self/maps");
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && !strstr(line, "[vdso]") &&
		    !strstr(line, "[vvar]"))
			madvise((void *)lo, hi - lo, MADV_NOHUGEPAGE);
	}
	fclose(f);
}

/* ---- the steps --------------------------------------------------------- */
static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	segv_code = si->si_code;
	fault_sig = sig;
	fault_addr = (unsigned long)si->si_addr;
	siglongjmp(segv_jmp, 1);
}

static void worker(int id);

static long do_access(const struct step *s, int write)
{
	unsigned long first = s->addr & ~(PAGE - 1);
	unsigned long last = (s->addr + s->len - 1) & ~(PAGE - 1);
	volatile uint64_t *p;
	unsigned long a;

	ctl->nvals = 0;
	if (sigsetjmp(segv_jmp, 1)) {
		int i;

		if (fault_sig != SIGBUS)
			return -(long)segv_code;
		/* With UFFD_FEATURE_SIGBUS a uffd fault is a SIGBUS instead of a
		 * wait for the monitor; the only uffd faults are uffd-wp ones. */
		for (i = 0; i < nuffd; i++)
			if (fault_addr >= uffd_lo[i] && fault_addr < uffd_hi[i])
				return ERR_UFFD_WP;
		return ERR_SIGBUS - segv_code;
	}
	for (a = first; a <= last; a += PAGE) {
		p = (volatile uint64_t *)a;
		if (write) {
			*p = s->value;
		} else {
			if (ctl->nvals >= MAXVALS)
				die("read of more than %lu pages", MAXVALS);
			ctl->vals[ctl->nvals++] = *p;
		}
	}
	return 0;
}

static long do_mmap(const struct step *s)
{
	int fd = -1;
	void *got;
	int flags = s->flags;

	if (s->file >= 0) {
		fd = open(files[s->file].path, (s->prot & PROT_WRITE) && (flags & MAP_SHARED) ? O_RDWR : O_RDONLY);
		if (fd < 0)
			die("open %s", files[s->file].path);
	}
	got = mmap((void *)s->addr, s->len, s->prot, flags, fd, s->offset);
	if (fd >= 0)
		close(fd);
	if (got == MAP_FAILED)
		return errno;
	if (s->expect_fail) {
		/* The model refused; the kernel did not: undo, report success. */
		munmap(got, s->len);
		return 0;
	}
	if ((unsigned long)got != s->addr)
		die("line %d: mmap at %#lx returned %p", s->line, s->addr, got);
	return 0;
}

/* mremap at the model's addresses: when the model moved the mapping, the
 * Python side added MREMAP_FIXED at the model's new address, so the result
 * is that address (or, unmoved, the old one). */
static long do_mremap(const struct step *s)
{
	void *got = mremap((void *)s->addr, s->len, s->value, s->flags, (void *)s->offset);
	unsigned long want = (s->flags & MREMAP_FIXED) ? s->offset : s->addr;

	if (got == MAP_FAILED)
		return errno;
	if (!s->expect_fail && (unsigned long)got != want)
		die("line %d: mremap of %#lx returned %p, the model's address is %#lx", s->line, s->addr, got, want);
	return 0;
}

/* UFFDIO_REGISTER(MODE_WP) then UFFDIO_WRITEPROTECT (value 1), or resolve
 * (value 0), as the model's p.uffd_wp() does.  No UFFD_FEATURE_EVENT_FORK:
 * the Python side refuses scenarios that fork after a uffd-wp step. */
static long do_uffd_wp(const struct step *s)
{
	struct uffdio_writeprotect wp;

	if (uffd < 0) {
		struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_SIGBUS };

		uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (uffd < 0)
			die("userfaultfd");
		if (ioctl(uffd, UFFDIO_API, &api))
			die("UFFDIO_API");
	}
	if (s->value) {
		struct uffdio_register reg = {
			.range = { .start = s->addr, .len = s->len },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};

		if (ioctl(uffd, UFFDIO_REGISTER, &reg))
			return errno;
		if (nuffd == MAXUFFD)
			die("more than %d uffd-wp registrations", MAXUFFD);
		uffd_lo[nuffd] = s->addr;
		uffd_hi[nuffd++] = s->addr + s->len;
	}
	wp.range.start = s->addr;
	wp.range.len = s->len;
	wp.mode = s->value ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))
		return errno;
	return 0;
}

static long run_step(const struct step *s)
{
	long r;

	switch (s->op) {
	case OP_WRITE:
		return do_access(s, 1);
	case OP_READ:
		return do_access(s, 0);
	case OP_MMAP:
		return do_mmap(s);
	case OP_MPROTECT:
		r = mprotect((void *)s->addr, s->len, s->prot);
		return r ? errno : 0;
	case OP_MADVISE:
		r = madvise((void *)s->addr, s->len, s->advice);
		return r ? errno : 0;
	case OP_MUNMAP:
		r = munmap((void *)s->addr, s->len);
		return r ? errno : 0;
	case OP_UFFD_WP:
		return do_uffd_wp(s);
	case OP_MREMAP:
		return do_mremap(s);
	case OP_FORK: {
		pid_t pid = fork();

		if (pid < 0)
			return errno;
		if (pid == 0)
			worker(s->child); /* never returns */
		ctl->pid[s->child] = pid;
		return 0;
	}
	case OP_EXIT:
		_exit(0);
	}
	die("line %d: op %d is not a worker step", s->line, s->op);
	return 0;
}

static void worker(int id)
{
	struct sigaction sa;
	int last = 0;

	me = id;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		wait_change(&ctl->seq[me], last);
		last = __atomic_load_n(&ctl->seq[me], __ATOMIC_ACQUIRE);
		ctl->err = run_step(&steps[ctl->step]);
		bump(&ctl->done);
	}
}

/* ---- the controller ---------------------------------------------------- */
static void create_file(const struct filedesc *f)
{
	unsigned long npages = (f->size + PAGE - 1) / PAGE, i;
	static uint64_t page[PAGE / 8];
	int fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		die("create %s", f->path);
	for (i = 0; i < npages; i++) {
		page[0] = (f->id << 40) | i;
		if (write(fd, page, PAGE) != (ssize_t)PAGE)
			die("write %s", f->path);
	}
	if (ftruncate(fd, f->size))
		die("truncate %s", f->path);
	close(fd);
}

static int pidfd_of(int proc)
{
	int fd = syscall(SYS_pidfd_open, ctl->pid[proc], 0);

	if (fd < 0)
		die("pidfd_open %d", ctl->pid[proc]);
	return fd;
}

static void wait_pidfd(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
		;
	close(fd);
}

static void print_result(int i, const struct step *s)
{
	unsigned long k, n = ctl->nvals;

	printf("@@S %d %d %ld", i, s->line, ctl->err);
	if (s->op == OP_READ && ctl->err == 0) {
		/* run-length encoded: value*count */
		for (k = 0; k < n;) {
			unsigned long j = k;

			while (j < n && ctl->vals[j] == ctl->vals[k])
				j++;
			printf(" %llx*%lu", (unsigned long long)ctl->vals[k], j - k);
			k = j;
		}
	}
	printf("\n");
}

static void dump_trace(void)
{
	char buf[65536];
	ssize_t n;
	int fd = open(TRACING "trace", O_RDONLY);

	if (fd < 0)
		die("open trace");
	fflush(stdout);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(1, buf, n) != n)
			break;
	close(fd);
}

int main(void)
{
	int i, p;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("@@SCENARIO %s\n", SCENARIO_NAME);
	thp_policy("never", 1);
	prefault_stack();
	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctl == MAP_FAILED)
		die("mmap ctl");
	memset(ctl, 0, offsetof(struct ctl, vals));
	no_huge_self();
	signal(SIGCHLD, SIG_IGN);
	marker_fd = open(TRACING "trace_marker", O_WRONLY);
	if (marker_fd < 0)
		die("open trace_marker");
	thp_policy(THP_TOP, 0);
	/* empty the trace, start tracing */
	close(open(TRACING "trace", O_WRONLY | O_TRUNC));
	write_file(TRACING "tracing_on", "1", 1);
	for (i = 0; i < NSTEPS; i++) {
		const struct step *s = &steps[i];

		marker("B", i);
		ctl->err = 0;
		ctl->nvals = 0;
		switch (s->op) {
		case OP_NOP:
			break;
		case OP_FILE:
			create_file(&files[s->file]);
			break;
		case OP_SPAWN: {
			pid_t pid = fork();

			if (pid < 0)
				die("fork");
			if (pid == 0)
				worker(s->child);
			ctl->pid[s->child] = pid;
			break;
		}
		case OP_EXIT: {
			int fd = pidfd_of(s->proc);

			ctl->step = i;
			bump(&ctl->seq[s->proc]);
			wait_pidfd(fd);
			ctl->pid[s->proc] = 0;
			break;
		}
		default: {
			int d = __atomic_load_n(&ctl->done, __ATOMIC_ACQUIRE);

			ctl->step = i;
			bump(&ctl->seq[s->proc]);
			wait_change(&ctl->done, d);
		}
		}
		marker("E", i);
		print_result(i, s);
	}
	write_file(TRACING "tracing_on", "0", 1);
	/* the scenario's processes are not part of it any more */
	for (p = 0; p < MAXPROCS; p++) {
		if (ctl->pid[p] > 0) {
			int fd = syscall(SYS_pidfd_open, ctl->pid[p], 0);

			kill(ctl->pid[p], SIGKILL);
			if (fd >= 0)
				wait_pidfd(fd);
		}
	}
	thp_policy("never", 1);
	printf("@@TRACE-BEGIN\n");
	dump_trace();
	printf("@@TRACE-END\n@@SCENARIO-END\n");
	return 0;
}
