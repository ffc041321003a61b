/* The worker pool (see workers.h): two queues under one mutex (the CPU's
 * work and the device waits), threads that take from either, and a list
 * of finished work that one libevent event, activated from the workers
 * (libevent's pthreads locking is on, see loop.c), hands back to the
 * loop. */
#include "engine/core/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>

#include "engine/core/util.h"

/* How much nicer the worker threads are than the process (the loop
 * thread keeps the process's). */
#define WORKER_NICE 10
/* Threads that wait for the device (work_submit_io): a few waits at once
 * let the file system commit them together. */
#define IO_THREADS 4

struct work_list;

struct work {
	TAILQ_ENTRY(work) link;
	work_fn fn, done, release;
	void *arg;
	struct queue *q;
	int running;
	int cancelled;
};
TAILQ_HEAD(work_list, work);

struct queue {
	struct work_list list;
	pthread_cond_t more;
};

static struct {
	pthread_mutex_t lock;
	struct queue cpu, io;
	struct work_list finished;
	pthread_t *threads;
	int nthreads, ncpu;
	int quit;
	struct event *ev;
} pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cpu = { .more = PTHREAD_COND_INITIALIZER },
	.io = { .more = PTHREAD_COND_INITIALIZER },
};

static void *
worker_main(void *arg)
{
	struct queue *q = arg;
	struct work *w;
	id_t self = (id_t)syscall(SYS_gettid);
	int nice;

	/* Below the loop thread (Linux: a thread's own nice value), so that
	 * the status socket and the transfers stay served while the workers
	 * hash and compress on every core (SPEC §8: ping within 100 ms;
	 * test_backup_faults measures it).  Nothing to do when refused. */
	errno = 0;
	nice = getpriority(PRIO_PROCESS, self);
	if (errno == 0)
		(void)setpriority(PRIO_PROCESS, self, nice + WORKER_NICE > 19 ? 19 : nice + WORKER_NICE);
	pthread_mutex_lock(&pool.lock);
	for (;;) {
		while (!pool.quit && TAILQ_EMPTY(&q->list))
			pthread_cond_wait(&q->more, &pool.lock);
		if (pool.quit)
			break;
		w = TAILQ_FIRST(&q->list);
		TAILQ_REMOVE(&q->list, w, link);
		w->running = 1;
		pthread_mutex_unlock(&pool.lock);
		w->fn(w->arg);
		pthread_mutex_lock(&pool.lock);
		TAILQ_INSERT_TAIL(&pool.finished, w, link);
		event_active(pool.ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

static void
work_free(struct work *w)
{
	if (w->release != NULL)
		w->release(w->arg);
	free(w);
}

/* On the loop: hand every finished work to its done. */
static void
finished_cb(evutil_socket_t fd, short what, void *unused)
{
	struct work_list done = TAILQ_HEAD_INITIALIZER(done);
	struct work *w;

	pthread_mutex_lock(&pool.lock);
	TAILQ_CONCAT(&done, &pool.finished, link);
	pthread_mutex_unlock(&pool.lock);
	while ((w = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, w, link);
		if (!w->cancelled && w->done != NULL)
			w->done(w->arg);
		work_free(w);
	}
}

void
workers_init(struct event_base *base, int n)
{
	int i;

	if (pool.threads != NULL)
		return;
	if (n <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		n = c > 0 ? (int)c : 1;
	}
	TAILQ_INIT(&pool.cpu.list);
	TAILQ_INIT(&pool.io.list);
	TAILQ_INIT(&pool.finished);
	pool.quit = 0;
	if ((pool.ev = event_new(base, -1, 0, finished_cb, NULL)) == NULL)
		fatal("cannot create the worker pool's event");
	pool.threads = xcalloc((size_t)(n + IO_THREADS), sizeof(*pool.threads));
	for (i = 0; i < n + IO_THREADS; i++)
		if (pthread_create(&pool.threads[i], NULL, worker_main, i < n ? &pool.cpu : &pool.io) != 0)
			fatal("cannot start worker thread %d", i);
	pool.nthreads = n + IO_THREADS;
	pool.ncpu = n;
}

void
workers_free(void)
{
	struct work *w;
	int i;

	if (pool.threads == NULL)
		return;
	pthread_mutex_lock(&pool.lock);
	pool.quit = 1;
	pthread_cond_broadcast(&pool.cpu.more);
	pthread_cond_broadcast(&pool.io.more);
	pthread_mutex_unlock(&pool.lock);
	for (i = 0; i < pool.nthreads; i++)
		pthread_join(pool.threads[i], NULL);
	while ((w = TAILQ_FIRST(&pool.cpu.list)) != NULL) {
		TAILQ_REMOVE(&pool.cpu.list, w, link);
		work_free(w);
	}
	while ((w = TAILQ_FIRST(&pool.io.list)) != NULL) {
		TAILQ_REMOVE(&pool.io.list, w, link);
		work_free(w);
	}
	while ((w = TAILQ_FIRST(&pool.finished)) != NULL) {
		TAILQ_REMOVE(&pool.finished, w, link);
		work_free(w);
	}
	event_free(pool.ev);
	free(pool.threads);
	pool.threads = NULL;
	pool.nthreads = pool.ncpu = 0;
	pool.ev = NULL;
}

int
workers_count(void)
{
	return pool.ncpu;
}

static struct work *
submit(struct queue *q, work_fn fn, work_fn done, work_fn release, void *arg)
{
	struct work *w = xcalloc(1, sizeof(*w));

	if (pool.threads == NULL)
		fatal("work submitted before the worker pool started");
	w->fn = fn;
	w->done = done;
	w->release = release;
	w->arg = arg;
	w->q = q;
	pthread_mutex_lock(&pool.lock);
	TAILQ_INSERT_TAIL(&q->list, w, link);
	pthread_cond_signal(&q->more);
	pthread_mutex_unlock(&pool.lock);
	return w;
}

struct work *
work_submit(work_fn fn, work_fn done, work_fn release, void *arg)
{
	return submit(&pool.cpu, fn, done, release, arg);
}

struct work *
work_submit_io(work_fn fn, work_fn done, work_fn release, void *arg)
{
	return submit(&pool.io, fn, done, release, arg);
}

void
work_cancel(struct work *w)
{
	int queued;

	if (w == NULL)
		return;
	pthread_mutex_lock(&pool.lock);
	w->cancelled = 1;
	queued = !w->running;
	if (queued)
		TAILQ_REMOVE(&w->q->list, w, link);
	pthread_mutex_unlock(&pool.lock);
	if (queued)
		work_free(w);
}
