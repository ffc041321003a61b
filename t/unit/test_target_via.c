/* Unit tests for the transport of a target disk (engine/jobs/target_via.c)
 * and the names hot-add looks for (engine/jobs/hotadd.c): the order of
 * SPEC §6 on each of its inputs — a datastore mount, the appliance VM,
 * the datastore's delta format, the disk's size, the rule's whole_upload
 * — and the device and BIOS UUID forms Linux gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/jobs/hotadd.h"
#include "engine/jobs/target.h"

#define GiB (1024ull * 1024 * 1024)
#define TiB (1024ull * GiB)

static struct target_via_in
base_in(void)
{
	struct target_via_in in = {
		.ds = "ds0",
		.mount = NULL,
		.hotadd_no = "no appliance VM",
		.deltas_no = 0,
		.capacity = 8 * GiB,
		.whole_allowed = 1,
		.was = TARGET_VIA_NONE,
	};
	return in;
}

static enum target_via
choose(const struct target_via_in *in, const char *want_in_why)
{
	char *why = NULL;
	enum target_via v = target_via_choose(in, &why);

	assert_non_null(why);
	if (want_in_why != NULL && strstr(why, want_in_why) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", why, want_in_why);
	free(why);
	return v;
}

static void
test_mount_first(void **state)
{
	struct target_via_in in = base_in();

	in.mount = "/mnt/ds0";
	in.hotadd_no = NULL;
	assert_int_equal(choose(&in, "/mnt/ds0"), TARGET_VIA_DIRECT);
	/* Even a disk that went whole before: the mount writes it in place. */
	in.was = TARGET_VIA_WHOLE;
	assert_int_equal(choose(&in, NULL), TARGET_VIA_DIRECT);
}

static void
test_hotadd_before_deltas(void **state)
{
	struct target_via_in in = base_in();

	in.hotadd_no = NULL;
	assert_int_equal(choose(&in, "hot-add"), TARGET_VIA_HOTADD);
	/* On VMFS6 (no vmfsSparse) and over 2 TiB alike. */
	in.deltas_no = 1;
	in.deltas_why = "seSparse";
	in.capacity = 4 * TiB;
	assert_int_equal(choose(&in, NULL), TARGET_VIA_HOTADD);
}

static void
test_deltas_without_hotadd(void **state)
{
	struct target_via_in in = base_in();

	assert_int_equal(choose(&in, "no appliance VM"), TARGET_VIA_DELTA);
	/* The COWD limit: 2 TiB less a sector is the largest delta. */
	in.capacity = 2 * TiB - 512;
	assert_int_equal(choose(&in, NULL), TARGET_VIA_DELTA);
	in.capacity = 2 * TiB;
	assert_int_equal(choose(&in, "downtime grows"), TARGET_VIA_WHOLE);
}

static void
test_whole_last(void **state)
{
	struct target_via_in in = base_in();

	in.deltas_no = 1;
	in.deltas_why = "its deltas are seSparse";
	assert_int_equal(choose(&in, "seSparse"), TARGET_VIA_WHOLE);
	in.whole_allowed = 0;
	assert_int_equal(choose(&in, "whole_upload: false"), TARGET_VIA_NONE);
	/* Hot-add needs no whole upload, whatever the rule says. */
	in.hotadd_no = NULL;
	assert_int_equal(choose(&in, NULL), TARGET_VIA_HOTADD);
}

/* A datastore whose type the pre-check read as VMFS 6 (target.c): its
 * deltas are known to be seSparse before the first pass, so the first
 * choice already skips the delta, naming the datastore once. */
static void
test_vmfs6_known_before_first_pass(void **state)
{
	struct target_via_in in = base_in();
	char *why = NULL;

	in.deltas_no = 1;
	in.deltas_why = "datastore ds0 is VMFS 6: its snapshot deltas are seSparse, which nobody outside VMware writes";
	assert_int_equal(choose(&in, "no hot-add (no appliance VM); datastore ds0 is VMFS 6: its snapshot deltas are "
	                             "seSparse, which nobody outside VMware writes; uploaded whole at cutover"),
	    TARGET_VIA_WHOLE);
	assert_int_equal(target_via_choose(&in, &why), TARGET_VIA_WHOLE);
	assert_null(strstr(why, "cannot be written: datastore"));
	free(why);
	/* A kind that keeps restore points in the chain: nothing writes it. */
	in.whole_allowed = 0;
	in.whole_no = "restore points live in the target's chain, which a whole upload cannot make";
	assert_int_equal(choose(&in, "datastore ds0 is VMFS 6"), TARGET_VIA_NONE);
	assert_int_equal(choose(&in, "restore points live in the target's chain"), TARGET_VIA_NONE);
	assert_int_equal(choose(&in, "seSparse"), TARGET_VIA_NONE);
	/* Hot-add writes it; a refused attach goes whole, never to a delta. */
	in.whole_allowed = 1;
	in.whole_no = NULL;
	in.hotadd_no = NULL;
	assert_int_equal(choose(&in, "hot-add"), TARGET_VIA_HOTADD);
	in.was = TARGET_VIA_HOTADD;
	in.hotadd_no = "the appliance VM refused it";
	assert_int_equal(choose(&in, "VMFS 6"), TARGET_VIA_WHOLE);
	/* Without a reason the datastore is still named. */
	in.deltas_why = NULL;
	assert_int_equal(choose(&in, "datastore ds0's snapshot deltas cannot be written: not vmfsSparse"),
	    TARGET_VIA_WHOLE);
}

static void
test_whole_sticks(void **state)
{
	struct target_via_in in = base_in();

	in.was = TARGET_VIA_WHOLE;
	in.hotadd_no = NULL;
	assert_int_equal(choose(&in, "staging image"), TARGET_VIA_WHOLE);
	in.was = TARGET_VIA_HOTADD;
	in.hotadd_no = "attach refused";
	assert_int_equal(choose(&in, "attach refused"), TARGET_VIA_DELTA);
}

static void
test_names(void **state)
{
	char *n = hotadd_device_name("6000C298-5A3b-1f2c-77d4-0123456789AB");

	assert_string_equal(n, "wwn-0x6000c2985a3b1f2c77d40123456789ab");
	free(n);
	assert_null(hotadd_device_name("6000C298-5A3b"));
	assert_null(hotadd_device_name(NULL));
	assert_null(hotadd_device_name("6000C298-5A3b-1f2c-77d4-0123456789AG"));
	assert_true(hotadd_uuid_same("421c3e5b-0a1b-2c3d-4e5f-60718293a4b5", "421C3E5B0A1B2C3D4E5F60718293A4B5"));
	/* SMBIOS's order: the first three fields byte-swapped. */
	assert_true(hotadd_uuid_same("421c3e5b-0a1b-2c3d-4e5f-60718293a4b5", "5b3e1c42-1b0a-3d2c-4e5f-60718293a4b5"));
	assert_false(hotadd_uuid_same("421c3e5b-0a1b-2c3d-4e5f-60718293a4b5", "421c3e5b-0a1b-2c3d-4e5f-60718293a4b6"));
	assert_false(hotadd_uuid_same("", ""));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mount_first),
		cmocka_unit_test(test_hotadd_before_deltas),
		cmocka_unit_test(test_deltas_without_hotadd),
		cmocka_unit_test(test_whole_last),
		cmocka_unit_test(test_vmfs6_known_before_first_pass),
		cmocka_unit_test(test_whole_sticks),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
