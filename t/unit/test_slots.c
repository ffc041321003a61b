/* Unit tests for engine/slots.c without an event loop: slots_init(NULL),
 * passes run explicitly with slots_pass().  Items admit themselves by
 * taking the slot (slots_hold) in their admit callback, like jobs do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/slots.h"
#include "engine/core/util.h"

struct titem {
	struct slot_item it; /* first: admit gets &it */
	int id;
	int decline;          /* leave it queued when offered a slot */
	int offered;
};

static char admitted[256]; /* ids in admission order: "0 1 " */

static void
admit_cb(struct slot_item *si)
{
	struct titem *t = (struct titem *)si;
	size_t n = strlen(admitted);

	t->offered++;
	if (t->decline)
		return;
	slots_hold(si);
	snprintf(admitted + n, sizeof(admitted) - n, "%d ", t->id);
}

static void
items_init(struct titem *t, int n, const char *const *hosts)
{
	int i;

	memset(t, 0, sizeof(*t) * (size_t)n);
	for (i = 0; i < n; i++) {
		t[i].id = i;
		t[i].it.admit = admit_cb;
		slots_set_host(&t[i].it, hosts != NULL ? hosts[i] : "h");
	}
}

static int
setup(void **state)
{
	slots_init(NULL);
	admitted[0] = '\0';
	return 0;
}

static int
teardown(void **state)
{
	slots_free();
	return 0;
}

static void
test_global_limit_fifo(void **unused)
{
	struct titem t[5];
	const char *const hosts[] = { "h1", "h2", "h3", "h4", "h5" };
	int i;

	slots_set_limits(2, 2);
	items_init(t, 5, hosts);
	for (i = 0; i < 5; i++)
		slots_enqueue(&t[i].it);
	/* no loop: nothing is admitted until a pass runs */
	assert_int_equal(slots_active_total(), 0);
	assert_int_equal(slots_queued_total(), 5);

	assert_int_equal(slots_pass(), 2);
	assert_string_equal(admitted, "0 1 ");
	assert_int_equal(slots_active_total(), 2);
	assert_int_equal(slots_queued_total(), 3);
	assert_true(t[0].it.active && !t[0].it.queued);
	assert_true(t[2].it.queued && !t[2].it.active);
	/* the waiting ones were not even offered a slot */
	assert_int_equal(t[2].offered, 0);
	assert_int_equal(slots_position(&t[0].it), 0);
	assert_int_equal(slots_position(&t[2].it), 1);
	assert_int_equal(slots_position(&t[3].it), 2);
	assert_int_equal(slots_position(&t[4].it), 3);

	/* full: a pass admits nobody */
	assert_int_equal(slots_pass(), 0);
	assert_string_equal(admitted, "0 1 ");

	/* a release frees a slot for the head of the queue, at the next pass */
	slots_release(&t[1].it);
	assert_int_equal(slots_active_total(), 1);
	assert_false(t[2].it.active);
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(admitted, "0 1 2 ");
	assert_int_equal(slots_position(&t[3].it), 1);
	assert_int_equal(slots_position(&t[4].it), 2);

	/* releasing twice gives back one slot only */
	slots_release(&t[0].it);
	slots_release(&t[0].it);
	assert_int_equal(slots_active_total(), 1);
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(admitted, "0 1 2 3 ");
	assert_int_equal(slots_active_total(), 2);
}

static void
test_per_host_limit(void **unused)
{
	struct titem t[3];
	const char *const hosts[] = { "A", "A", "B" };
	int i;

	slots_set_limits(4, 1);
	items_init(t, 3, hosts);
	for (i = 0; i < 3; i++)
		slots_enqueue(&t[i].it);
	assert_int_equal(slots_pass(), 2);
	/* the second A waits though global slots are free; B overtakes it */
	assert_string_equal(admitted, "0 2 ");
	assert_int_equal(slots_active_on("A"), 1);
	assert_int_equal(slots_active_on("B"), 1);
	assert_int_equal(slots_active_on("C"), 0);
	assert_true(t[1].it.queued);
	assert_int_equal(slots_position(&t[1].it), 1);
	assert_int_equal(slots_pass(), 0);

	/* a slot on B does not help A */
	slots_release(&t[2].it);
	assert_int_equal(slots_pass(), 0);
	slots_release(&t[0].it);
	assert_int_equal(slots_active_on("A"), 0);
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(admitted, "0 2 1 ");
	assert_int_equal(slots_active_on("A"), 1);
}

static void
test_set_host_moves_the_count(void **unused)
{
	struct titem t[2];
	const char *const hosts[] = { "A", "B" };

	slots_set_limits(4, 1);
	items_init(t, 2, hosts);
	slots_enqueue(&t[0].it);
	assert_int_equal(slots_pass(), 1);
	/* the VM turns out to live on B */
	slots_set_host(&t[0].it, "B");
	assert_int_equal(slots_active_on("A"), 0);
	assert_int_equal(slots_active_on("B"), 1);
	slots_enqueue(&t[1].it);
	assert_int_equal(slots_pass(), 0);
	slots_release(&t[0].it);
	assert_int_equal(slots_active_on("B"), 0);
	assert_int_equal(slots_pass(), 1);
}

static void
test_dequeue(void **unused)
{
	struct titem t[4];
	int i;

	slots_set_limits(1, 1);
	items_init(t, 4, NULL);
	for (i = 0; i < 4; i++)
		slots_enqueue(&t[i].it);
	/* enqueueing twice does not queue twice */
	slots_enqueue(&t[3].it);
	assert_int_equal(slots_queued_total(), 4);

	slots_dequeue(&t[1].it);
	assert_int_equal(slots_queued_total(), 3);
	assert_false(t[1].it.queued);
	assert_int_equal(slots_position(&t[1].it), 0);
	assert_int_equal(slots_position(&t[2].it), 2);
	slots_dequeue(&t[1].it); /* harmless */
	assert_int_equal(slots_queued_total(), 3);

	assert_int_equal(slots_pass(), 1);
	slots_release(&t[0].it);
	assert_int_equal(slots_pass(), 1);
	slots_release(&t[2].it);
	assert_int_equal(slots_pass(), 1);
	slots_release(&t[3].it);
	/* the dequeued item is never admitted */
	assert_int_equal(slots_pass(), 0);
	assert_string_equal(admitted, "0 2 3 ");
	assert_int_equal(t[1].offered, 0);
	assert_int_equal(slots_queued_total(), 0);
}

static void
test_raise_and_lower_limits(void **unused)
{
	struct titem t[5];
	const char *const hosts[] = { "h1", "h2", "h3", "h4", "h5" };
	int i;

	slots_set_limits(1, 1);
	items_init(t, 5, hosts);
	for (i = 0; i < 5; i++)
		slots_enqueue(&t[i].it);
	assert_int_equal(slots_pass(), 1);
	slots_set_limits(3, 3);
	assert_int_equal(slots_pass(), 2);
	assert_string_equal(admitted, "0 1 2 ");
	assert_int_equal(slots_active_total(), 3);
	/* lowering takes no slot away, but admits nobody until below it */
	slots_set_limits(2, 2);
	assert_int_equal(slots_active_total(), 3);
	slots_release(&t[0].it);
	assert_int_equal(slots_pass(), 0);
	slots_release(&t[1].it);
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(admitted, "0 1 2 3 ");
}

static void
test_declined_item_keeps_its_place(void **unused)
{
	struct titem t[3];
	const char *const hosts[] = { "h1", "h2", "h3" };
	int i;

	slots_set_limits(1, 1);
	items_init(t, 3, hosts);
	t[0].decline = 1;
	for (i = 0; i < 3; i++)
		slots_enqueue(&t[i].it);
	/* the head declines: the next one gets the slot */
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(admitted, "1 ");
	assert_true(t[0].offered >= 1);
	assert_int_equal(slots_position(&t[0].it), 1);
	assert_int_equal(slots_position(&t[2].it), 2);
	slots_release(&t[1].it);
	t[0].decline = 0;
	assert_int_equal(slots_pass(), 1);
	assert_string_equal(admitted, "1 0 ");
}

static void
test_hold_without_queue(void **unused)
{
	struct titem t[2];

	slots_set_limits(1, 1);
	items_init(t, 2, NULL);
	/* a job reloaded in a transfer state takes its slot directly */
	slots_hold(&t[0].it);
	slots_hold(&t[0].it);
	assert_int_equal(slots_active_total(), 1);
	assert_int_equal(slots_active_on("h"), 1);
	slots_enqueue(&t[1].it);
	assert_int_equal(slots_pass(), 0);
	slots_release(&t[0].it);
	assert_int_equal(slots_pass(), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_global_limit_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_per_host_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_host_moves_the_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dequeue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raise_and_lower_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_declined_item_keeps_its_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_without_queue, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
