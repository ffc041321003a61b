/* The status socket under descriptor pressure: clients beyond what the
 * descriptor limit allows (the jobs' reserve kept) wait in the backlog and
 * are served once others leave; an accept that runs out of descriptors
 * pauses the listener instead of spinning, and accepting resumes when
 * descriptors are free again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "engine/ctl.h"
#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/core/util.h"

#define NCLIENTS 20

static char dir[64];
static char path[128];
static struct rlimit saved;

static json_t *
handler(struct ctl_client *c, const struct request *req)
{
	return json_pack("{s:b,s:s}", "ok", 1, "op", "answered");
}

static int
setup(void **state)
{
	log_set_level(LOG_ERR);
	snprintf(dir, sizeof(dir), "/tmp/vmferry-ctl-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/sock", dir);
	getrlimit(RLIMIT_NOFILE, &saved);
	loop_init();
	return 0;
}

static int
teardown(void **state)
{
	ctl_close();
	loop_free();
	setrlimit(RLIMIT_NOFILE, &saved);
	rmdir(dir);
	return 0;
}

static int
connect_client(void)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	/* Succeeds once the connection is in the listen backlog. */
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

/* Turn the loop until cond() holds or timeout_s passes; returns cond(). */
static int (*until_cond)(void);

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	double *deadline = arg;

	if (until_cond() || now_mono() >= *deadline)
		event_base_loopexit(loop_base(), NULL);
}

static int
run_until(int (*cond)(void), double timeout_s)
{
	double deadline = now_mono() + timeout_s;
	struct timeval tv = { 0, 10000 };
	struct event *ev = event_new(loop_base(), -1, EV_PERSIST, poll_cb, &deadline);

	until_cond = cond;
	event_add(ev, &tv);
	event_base_dispatch(loop_base());
	event_free(ev);
	return cond();
}

static int
never(void)
{
	return 0;
}

static int want_clients;

static int
count_reached(void)
{
	return ctl_client_count() == want_clients;
}

/* Send a ping; returns 1 if an answer is readable within the loop turns
 * that run_until gives it. */
static int answer_fd;

static int
answered(void)
{
	struct pollfd p = { answer_fd, POLLIN, 0 };

	return poll(&p, 1, 0) == 1;
}

static int
ping_answered(int fd, double timeout_s)
{
	static const char req[] = "{\"op\":\"ping\"}\n";
	char buf[256];
	ssize_t n;

	if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
		return 0;
	answer_fd = fd;
	if (!run_until(answered, timeout_s))
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strstr(buf, "\"answered\"") != NULL;
}

/* With a limit of 64 descriptors, 16 clients are served at once (a
 * quarter: the rest is the jobs'); the others wait in the backlog, not
 * refused, and are served as soon as served clients leave. */
static void
test_clients_beyond_the_limit_wait(void **state)
{
	struct rlimit rl = saved;
	int fds[NCLIENTS], i;

	rl.rlim_cur = 64;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_int_equal(ctl_open(loop_base(), path, handler), 0);
	assert_int_equal(ctl_client_max(), 16);
	for (i = 0; i < NCLIENTS; i++)
		fds[i] = connect_client();
	want_clients = 16;
	assert_true(run_until(count_reached, 10));
	run_until(never, 0.3);
	assert_int_equal(ctl_client_count(), 16);
	/* A waiting client gets no answer yet (it is the last in the backlog). */
	assert_false(ping_answered(fds[NCLIENTS - 1], 0.3));
	/* Served ones are answered. */
	for (i = 0; i < 16; i += 5)
		assert_true(ping_answered(fds[i], 5));
	/* Four leave: the four waiting ones are taken in. */
	for (i = 0; i < 4; i++)
		close(fds[i]);
	want_clients = 16;
	run_until(never, 0.2);
	assert_true(run_until(count_reached, 10));
	for (i = 16; i < NCLIENTS; i++) {
		char buf[256];
		ssize_t n;

		/* The ping sent above while it waited is answered now. */
		if (i == NCLIENTS - 1) {
			answer_fd = fds[i];
			assert_true(run_until(answered, 5));
			n = read(fds[i], buf, sizeof(buf) - 1);
			assert_true(n > 0);
			continue;
		}
		assert_true(ping_answered(fds[i], 5));
	}
	for (i = 4; i < NCLIENTS; i++)
		close(fds[i]);
	want_clients = 0;
	assert_true(run_until(count_reached, 10));
}

/* Times the process waited in the kernel (the loop blocking in
 * epoll_wait).  A loop that spins on a listener it cannot serve never
 * blocks, whatever share of a loaded CPU it gets. */
static long
voluntary_waits(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_nvcsw;
}

/* Every descriptor taken (by something else than clients): accept fails
 * with EMFILE.  The listener pauses instead of spinning (the loop stays
 * idle), and once descriptors are free the waiting clients are taken in
 * and answered. */
static void
test_out_of_descriptors_pauses_accepting(void **state)
{
	struct rlimit rl = saved;
	int fds[8], hog[512], nhog = 0, i;
	long waits;

	rl.rlim_cur = 256;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_int_equal(ctl_open(loop_base(), path, handler), 0);
	assert_true(ctl_client_max() >= 8);
	for (i = 0; i < 8; i++)
		fds[i] = connect_client();
	while (nhog < 512 && (hog[nhog] = dup(0)) >= 0)
		nhog++;
	assert_true(nhog > 0 && nhog < 512);
	waits = voluntary_waits();
	/* The 10 ms poll timer of run_until: about 100 turns in a second. */
	run_until(never, 1.0);
	waits = voluntary_waits() - waits;
	assert_int_equal(ctl_client_count(), 0);
	if (waits < 20)
		fail_msg("the loop spun on a listener that cannot accept: it waited only %ld times in 1 s", waits);
	for (i = 0; i < nhog; i++)
		close(hog[i]);
	want_clients = 8;
	assert_true(run_until(count_reached, 10));
	for (i = 0; i < 8; i++)
		assert_true(ping_answered(fds[i], 5));
	for (i = 0; i < 8; i++)
		close(fds[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clients_beyond_the_limit_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_descriptors_pauses_accepting, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
