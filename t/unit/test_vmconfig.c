/* engine/jobs/vmconfig.c: a VM's configuration to JSON and back keeps
 * everything CreateVM is given (the hardware a restore to a new VM is
 * made from); a configuration saved before the hardware was kept is
 * refused with the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "drivers/vsops.h"
#include "engine/core/util.h"
#include "engine/jobs/vmconfig.h"

static void
fill(struct vs_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->name = xstrdup("web01");
	vm->moref = xstrdup("vm-42");
	vm->guest_id = xstrdup("debian12_64Guest");
	vm->version = xstrdup("vmx-19");
	vm->host_name = xstrdup("esx1");
	vm->datacenter = xstrdup("DC0");
	vm->datastore = xstrdup("ds0");
	vm->firmware = xstrdup("efi");
	vm->secure_boot = 1;
	vm->cpus = 4;
	vm->cores_per_socket = 2;
	vm->memory_mb = 8192;
	vm->ncontrollers = 2;
	vm->controllers = xcalloc(2, sizeof(*vm->controllers));
	vm->controllers[0] = (struct vs_controller){ 1000, 0, xstrdup("ParaVirtualSCSIController"), VS_CTRL_PVSCSI,
		xstrdup("noSharing"), 160 };
	vm->controllers[1] = (struct vs_controller){ 15000, 0, xstrdup("VirtualAHCIController"), VS_CTRL_AHCI, NULL, 33 };
	vm->ndisks = 2;
	vm->disks = xcalloc(2, sizeof(*vm->disks));
	vm->disks[0].key = 2000;
	vm->disks[0].file = xstrdup("[ds0] web01/web01.vmdk");
	vm->disks[0].capacity = 8589934592ull + 512;
	vm->disks[0].mode = xstrdup("persistent");
	vm->disks[0].controller_key = 1000;
	vm->disks[1].key = 2001;
	vm->disks[1].file = xstrdup("[ds0] web01/web01_1.vmdk");
	vm->disks[1].capacity = 3 << 20;
	vm->disks[1].controller_key = 15000;
	vm->disks[1].unit = 1;
	vm->nnics = 1;
	vm->nics = xcalloc(1, sizeof(*vm->nics));
	vm->nics[0] = (struct vs_nic){ xstrdup("VirtualVmxnet3"), xstrdup("VM Network"), xstrdup("00:50:56:01:02:03"),
		xstrdup("manual"), 4000, 192, 1 };
	vm->ncdroms = 1;
	vm->cdroms = xcalloc(1, sizeof(*vm->cdroms));
	vm->cdroms[0] = (struct vs_drive){ 3002, 15000, 0 };
	vm->nextra = 1;
	vm->extra = xcalloc(1, sizeof(*vm->extra));
	vm->extra[0].key = xstrdup("disk.EnableUUID");
	vm->extra[0].value = xstrdup("TRUE");
}

static void
test_round_trip(void **unused)
{
	struct vs_vm a, b;
	json_t *j;
	char *text, *err = NULL;

	fill(&a);
	j = vmconfig_json(&a);
	/* Through text, as a manifest keeps it. */
	text = json_dumps(j, JSON_SORT_KEYS);
	json_decref(j);
	j = json_loads(text, 0, NULL);
	free(text);
	assert_int_equal(vmconfig_parse(j, &b, &err), 0);
	json_decref(j);
	assert_string_equal(b.name, "web01");
	assert_string_equal(b.guest_id, "debian12_64Guest");
	assert_string_equal(b.version, "vmx-19");
	assert_string_equal(b.host_name, "esx1");
	assert_string_equal(b.datacenter, "DC0");
	assert_string_equal(b.datastore, "ds0");
	assert_string_equal(b.firmware, "efi");
	assert_int_equal(b.secure_boot, 1);
	assert_int_equal(b.cpus, 4);
	assert_int_equal(b.cores_per_socket, 2);
	assert_int_equal(b.memory_mb, 8192);
	assert_int_equal(b.ncontrollers, 2);
	assert_int_equal(b.controllers[0].kind, VS_CTRL_PVSCSI);
	assert_int_equal(b.controllers[0].pci_slot, 160);
	assert_string_equal(b.controllers[0].shared_bus, "noSharing");
	assert_int_equal(b.controllers[1].kind, VS_CTRL_AHCI);
	assert_int_equal(b.ndisks, 2);
	assert_true(b.disks[0].capacity == 8589934592ull + 512);
	assert_int_equal(b.disks[1].controller_key, 15000);
	assert_int_equal(b.disks[1].unit, 1);
	assert_int_equal(b.nnics, 1);
	assert_string_equal(b.nics[0].mac, "00:50:56:01:02:03");
	assert_int_equal(b.nics[0].pci_slot, 192);
	assert_int_equal(b.nics[0].start_connected, 1);
	assert_int_equal(b.ncdroms, 1);
	assert_int_equal(b.cdroms[0].controller_key, 15000);
	assert_int_equal(b.nextra, 1);
	assert_string_equal(b.extra[0].key, "disk.EnableUUID");
	assert_string_equal(b.extra[0].value, "TRUE");
	vs_vm_free(&a);
	vs_vm_free(&b);
}

static void
test_old_config_refused(void **unused)
{
	struct vs_vm b;
	char *err = NULL;
	json_t *j = json_loads("{\"name\":\"web01\",\"disks\":[{\"key\":2000,\"capacity\":1024}]}", 0, NULL);

	assert_int_equal(vmconfig_parse(j, &b, &err), -1);
	assert_non_null(strstr(err, "can be restored to the original VM only"));
	free(err);
	json_decref(j);
	j = json_loads("{\"hardware\":{\"version\":2},\"disks\":[]}", 0, NULL);
	assert_int_equal(vmconfig_parse(j, &b, &err), -1);
	assert_non_null(strstr(err, "names no VM or no disks"));
	free(err);
	json_decref(j);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_old_config_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
